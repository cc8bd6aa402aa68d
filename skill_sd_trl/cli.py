"""Command line: ``skill-sd-trl {train,eval,report,show-bank}`` (also ``python -m skill_sd_trl.cli``).

``train`` parses a recipe like ``trl grpo --config``: YAML gives defaults, flags override. It runs unchanged under
``accelerate launch -m skill_sd_trl.cli train --config recipes/<env>/<method>.yaml``.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from dataclasses import fields
from pathlib import Path

from .app.recipe import config_path, parse, parse_train_args, parser, read_recipe, train_types

USAGE = """skill-sd-trl <command> [options]

commands:
  train      train with a recipe:  skill-sd-trl train --config recipes/sokoban/skill_sd_cpu.yaml [--flag value ...]
  eval       evaluate models:      skill-sd-trl eval --config recipes/sokoban/skill_sd_cpu.yaml --model smollm2-135m-sokoban-base outputs/run
  report     training curves:      skill-sd-trl report outputs/run
  show-bank  print a skill bank:   skill-sd-trl show-bank outputs/run/skill_bank.json
  experiment methods x seeds:      skill-sd-trl experiment --config recipes/sokoban/experiments/experiment_cpu.yaml [--methods grpo,skill_sd]
"""


def main(argv: list[str] | None = None) -> int:
    # TRL flags `rollout_func`/`environment_factory` as experimental; they are this package's documented path.
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    commands = {"train": train_main, "eval": eval_main, "report": report_main, "show-bank": show_bank_main,
                "experiment": experiment_main}
    if command not in commands:
        close = difflib.get_close_matches(command, list(commands), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        print(f"error: unknown command {command!r}.{hint} Commands: {', '.join(commands)} (skill-sd-trl --help).",
              file=sys.stderr)
        return 2
    from .app.recipe import RecipeError
    from .envs.registry import EnvError
    from .models import ModelNotFoundError

    try:
        return commands[command](rest) or 0
    except (RecipeError, EnvError, ModelNotFoundError) as e:  # a user's mistake, found after parsing: one line
        raise SystemExit(f"error: {' '.join(str(e).split())}") from None
    except KeyboardInterrupt:  # the second Ctrl-C (the first one saves a checkpoint): no traceback
        print("\naborted: nothing saved since the last checkpoint.", file=sys.stderr)
        return 130


#: TRL / Trainer fields a recipe usually sets, listed in the short help (every other one is accepted too).
COMMON_TRL_FIELDS = ("model_name_or_path", "output_dir", "max_steps", "learning_rate", "per_device_train_batch_size",
                     "num_generations", "max_completion_length", "use_peft", "lora_r", "use_vllm", "report_to",
                     "push_to_hub", "hub_model_id", "resume_from_checkpoint", "seed")


def train_help() -> str:
    """A short help that leads with ``--config`` and the Skill-SD fields, grouped (``--help-all``: everything)."""
    from trl import GRPOConfig

    from .app.script_args import SkillSDScriptArguments
    from .envs.arguments import EnvArguments

    types = train_types()
    by_name = {f.name: f for t in types for f in fields(t)}
    grpo = {f.name for f in fields(GRPOConfig)}
    env = [f.name for f in fields(EnvArguments)]
    groups = [
        ("Skill-SD (SkillSDConfig)", [f.name for f in fields(types[1]) if f.name not in grpo]),
        ("Skills, reward and evaluation", [f.name for f in fields(SkillSDScriptArguments) if f.name not in env]),
        ("Environment (EnvArguments; also read by `skill-sd-trl eval`)", env),
        ("Common TRL fields (GRPOConfig, ModelConfig)", list(COMMON_TRL_FIELDS)),
    ]
    lines = ["usage: skill-sd-trl train --config RECIPE.yaml [--field value ...]", "",
             "Train with a recipe (recipes/<env>/<method>.yaml): the YAML gives the values, flags override them.",
             "Example: skill-sd-trl train --config recipes/sokoban/skill_sd_cpu.yaml --max_steps 8", ""]
    for title, names in groups:
        lines.append(f"{title}:")
        for name in names:
            f = by_name[name]
            text = " ".join(str(f.metadata.get("help", "")).split())
            text = text.split(". ")[0].rstrip(".")
            text = text if len(text) <= 88 else text[:85].rstrip() + "..."
            lines.append(f"  --{name:<28} {text}")
        lines.append("")
    lines.append("Every GRPOConfig / TrainingArguments and ModelConfig field is accepted as well: "
                 "skill-sd-trl train --help-all lists them all (docs/configuration.md explains the Skill-SD ones).")
    return "\n".join(lines)


def train_main(argv: list[str]) -> int:
    from .app.train import TrainingInterrupted, run_train

    if "--help-all" in argv:
        from trl import TrlParser

        TrlParser(train_types(), prog="skill-sd-trl train").print_help()
        return 0
    if "-h" in argv or "--help" in argv:
        print(train_help())
        return 0
    script, args, model_args, recipe = parse_train_args(argv)
    try:
        run_train(script, args, model_args, recipe_path=recipe)
    except TrainingInterrupted as stop:
        print(stop, file=sys.stderr)
        return 130  # the shell's code for "ended by Ctrl-C"
    return 0


def eval_main(argv: list[str]) -> int:
    """Evaluate models on one environment: the flags (or a train recipe via ``--config``) of :class:`EnvArguments`."""
    from .app.evaluation import EvalArguments, evaluate, format_table, load_for_eval, write_results
    from .envs.arguments import EnvArguments
    from .models import ModelNotFoundError, require_available, resolve_model

    recipe = config_path(argv)
    # a train recipe is welcome (its environment, tasks and limits); a typo is not
    config = read_recipe(recipe, train_types() + (EvalArguments,)) if recipe is not None else {}
    p = parser((EnvArguments, EvalArguments), "skill-sd-trl eval",
               description="Evaluate models or checkpoints on an environment (Acc./Comp. table).")
    env, a = parse(p, argv, config)
    results = []
    for path, label in zip(a.model, a.label or a.model, strict=True):
        if not Path(path).exists() and "/" not in path and not path.lower().startswith(("smollm2", "embedded:")):
            raise SystemExit(f"error: model {path!r} is neither a folder, a Hub id (org/name) nor an embedded alias.")
        try:
            require_available(resolve_model(path))
        except ModelNotFoundError as e:
            raise SystemExit(f"error: {e}") from None
        model, tokenizer = load_for_eval(path)
        results.append(evaluate(label, env.spec, split=env.eval_split,
                                max_samples=env.max_eval_samples, batch_size=env.eval_batch_size,
                                limits=env.limits(), completion_budget=a.max_completion_length, model=model,
                                tokenizer=tokenizer))
    print("\n" + format_table(results) + "\n")
    if a.eval_output_dir:
        json_path, csv_path = write_results(results, a.eval_output_dir)
        print(f"wrote {json_path} and {csv_path}")
    return 0


def report_main(argv: list[str]) -> int:
    from .app.report import write_report

    p = argparse.ArgumentParser(prog="skill-sd-trl report", description="Training curves as PNG from a run's logs.")
    p.add_argument("run_dir", help="A training output folder (with trainer_state.json, or a checkpoint-* inside).")
    p.add_argument("--output-dir", default=None, help="Where to write the PNGs (default: <run_dir>/report).")
    a = p.parse_args(argv)
    try:
        paths = write_report(a.run_dir, a.output_dir)
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e} Give a training output folder: skill-sd-trl report outputs/<run>.") from None
    for path in paths:
        print(path)
    return 0


def show_bank_main(argv: list[str]) -> int:
    from .skills.show import main as show_main

    return show_main(argv)


def experiment_main(argv: list[str]) -> int:
    from .experiment import experiment_main as run_experiment

    return run_experiment(argv)


if __name__ == "__main__":
    raise SystemExit(main())
