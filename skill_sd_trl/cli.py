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

USAGE = """skill-sd-trl <command> [options]

commands:
  train      train with a recipe:  skill-sd-trl train --config recipes/sokoban/skill_sd_cpu.yaml [--flag value ...]
  eval       evaluate models:      skill-sd-trl eval --model smollm2-135m-instruct --model outputs/run --env sokoban
  report     training curves:      skill-sd-trl report outputs/run
  show-bank  print a skill bank:   skill-sd-trl show-bank outputs/run/skill_bank.json
  experiment methods x seeds:      skill-sd-trl experiment --config recipes/sokoban/experiment_cpu.yaml [--methods grpo,skill_sd]
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
        print(f"error: unknown command {command!r}.{hint}\n\n{USAGE}", file=sys.stderr)
        return 2
    return commands[command](rest) or 0


def parse_train_args(argv: list[str]):
    """(script args, SkillSDConfig, ModelConfig) from ``--config recipe.yaml`` and flags, with recipe-key checks."""
    from trl import ModelConfig, TrlParser

    from .config import SkillSDConfig
    from .script_args import SkillSDScriptArguments

    types = (SkillSDScriptArguments, SkillSDConfig, ModelConfig)
    recipe = None
    if "--config" in argv:
        index = argv.index("--config")
        if index + 1 >= len(argv):
            raise SystemExit("error: --config needs a path to a recipe YAML file.")
        recipe = argv[index + 1]
        check_recipe(recipe, types)
    parser = TrlParser(types)
    script, args, model_args = parser.parse_args_and_config(args=argv)
    return script, args, model_args, recipe


def check_recipe(path: str, types) -> dict:
    """Fail early and clearly on a missing recipe or a key no dataclass knows (with a suggestion)."""
    import yaml

    if not Path(path).is_file():
        raise SystemExit(f"error: recipe file {path!r} not found. Recipes live in recipes/<env>/<method>.yaml.")
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise SystemExit(f"error: recipe {path!r} must be a YAML mapping of option: value.")
    known = {f.name for t in types for f in fields(t)} | {"env"}  # `env`: environment variables (TRL convention)
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise SystemExit(f"error: unknown recipe key {key!r} in {path}.{hint} See docs/configuration.md.")
    return data


def train_main(argv: list[str]) -> int:
    from .train import run_train

    script, args, model_args, recipe = parse_train_args(argv)
    run_train(script, args, model_args, recipe_path=recipe)
    return 0


def eval_main(argv: list[str]) -> int:
    from .envs.registry import ENV_NAMES

    p = argparse.ArgumentParser(prog="skill-sd-trl eval", description="Evaluate models/checkpoints on environments.")
    p.add_argument("--model", action="append", required=True,
                   help="Model or checkpoint (Hub id, embedded alias, folder, LoRA checkpoint); repeat for a side-by-side table.")
    p.add_argument("--label", action="append", help="Display name per --model (same order).")
    p.add_argument("--env", action="append", choices=ENV_NAMES, help="Environment(s); repeat for several. Default: sokoban.")
    p.add_argument("--split", default=None, help="Split (default: each env's evaluation split).")
    p.add_argument("--preset", default="small", help="Environment preset (Sokoban: tiny, small, paper).")
    p.add_argument("--seed", type=int, default=0, help="Task generator seed.")
    p.add_argument("--server-url", default=None, help="AppWorld server URL(s), comma-separated (env appworld).")
    p.add_argument("--lenient-actions", action="store_true",
                   help="Sokoban: read direction words from turns that miss the answer grammar (tiny models).")
    p.add_argument("--prompt-style", choices=["full", "compact"], default=None,
                   help="Sokoban prompt (the one the model was trained with; the CPU recipes use compact).")
    p.add_argument("--max-samples", type=int, default=None, help="Evaluate on only the first N tasks.")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-turns", type=int, default=None)
    p.add_argument("--max-new-tokens-per-turn", type=int, default=None)
    p.add_argument("--completion-budget", type=int, default=1024, help="Token budget of a whole episode.")
    p.add_argument("--output-dir", default=None, help="Write eval_results.json and eval_results.csv here.")
    a = p.parse_args(argv)
    if a.label and len(a.label) != len(a.model):
        p.error(f"--label given {len(a.label)} times for {len(a.model)} --model; give one label per model or none.")

    from .envs.registry import get_env_spec
    from .evaluation import evaluate, format_table, load_for_eval, write_results

    results = []
    labels = a.label or a.model
    for path, label in zip(a.model, labels, strict=True):
        if not Path(path).exists() and "/" not in path and not path.lower().startswith(("smollm2", "embedded:")):
            raise SystemExit(f"error: model {path!r} is neither a folder, a Hub id (org/name) nor an embedded alias.")
        model, tokenizer = load_for_eval(path)
        for env in a.env or ["sokoban"]:
            spec = get_env_spec(env)
            limits = spec.limits(a.max_turns, a.max_new_tokens_per_turn)
            result = evaluate(label, env=env, split=a.split, max_samples=a.max_samples, batch_size=a.batch_size,
                              env_options={"preset": a.preset, "seed": a.seed, "server_url": a.server_url,
                                           "lenient_actions": a.lenient_actions or None,
                                           "prompt_style": a.prompt_style},
                              limits=limits, completion_budget=a.completion_budget, model=model, tokenizer=tokenizer)
            results.append(result)
    print("\n" + format_table(results) + "\n")
    if a.output_dir:
        json_path, csv_path = write_results(results, a.output_dir)
        print(f"wrote {json_path} and {csv_path}")
    return 0


def report_main(argv: list[str]) -> int:
    from .report import write_report

    p = argparse.ArgumentParser(prog="skill-sd-trl report", description="Training curves as PNG from a run's logs.")
    p.add_argument("run_dir", help="A training output folder (with trainer_state.json, or a checkpoint-* inside).")
    p.add_argument("--output-dir", default=None, help="Where to write the PNGs (default: <run_dir>/report).")
    a = p.parse_args(argv)
    for path in write_report(a.run_dir, a.output_dir):
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
