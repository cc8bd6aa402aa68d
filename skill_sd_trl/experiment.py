"""Learning experiments: a matrix of methods × seeds × level sets, trained at equal optimizer steps, then aggregated.

``skill-sd-trl experiment --config recipes/sokoban/experiments/experiment_cpu.yaml`` reads an *experiment* YAML (not a
train recipe): a base train recipe whose fields are every cell's defaults, named methods (recipe overrides), seeds,
level seeds, ``max_steps``, ``eval_every`` and evaluation settings. Each cell (method, seed, level seed) trains in its own
``python -m skill_sd_trl.experiment run-cell <cell dir>`` process, so its peak memory and RNG are its own; every
``eval_every`` steps (and at step 0, the base model) a callback evaluates the student greedily, with the plain prompt,
on the held-out test levels and on the training tasks. A finished cell writes ``result.json`` atomically; a re-run
skips finished cells, and a killed cell (no ``result.json``) is run again. Aggregation writes ``results.json``, a
paper-style Markdown table (``table.md``) and curves as PNG. See docs/experiments.md.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import atomic_write, atomic_write_json
from .report import integer_step_ticks

RESULT_FILE = "result.json"
CELL_FILE = "cell.json"
BASE_EVALS_DIR = "base_evals"
CELL_RECIPE = "recipe.yaml"
CELL_LOG = "log.txt"
EVENTS_FILE = "events.jsonl"
RESULTS_FILE = "results.json"
TABLE_FILE = "table.md"
CURVE_STEP_FILE = "test_acc_vs_step.png"
CURVE_TIME_FILE = "test_acc_vs_time.png"
DIAGNOSTICS_FILE = "diagnostics.png"

# Experiment-level keys of the YAML file (anything else is a typo: fail with a suggestion).
EXPERIMENT_KEYS = ("extends", "base_recipe", "overrides", "methods", "default_methods", "reference_method", "seeds",
                   "level_seeds", "max_steps", "eval_every", "eval", "summarizer_wait", "output_dir")
EVAL_KEYS = ("test_levels", "train_levels", "greedy", "temperature", "batch_size")
# Recipe fields the experiment itself sets per cell: a method or the shared overrides may not change them.
CONTROLLED = ("seed", "env_seed", "max_steps", "output_dir", "summarizer_wait", "max_eval_samples", "eval_only",
              "evaluate_after_training", "logging_steps", "resume_from_checkpoint")
# The base model: shared by every method (set it in `overrides`, never per method).
SHARED_ONLY = ("model_name_or_path", "model_revision", "tiny_model")
# Prefixes of the trainer's diagnostic metrics summarized per method (every numeric key is kept per step anyway).
DIAGNOSTIC_PREFIXES = ("teacher/", "self_distillation/", "skills/")
# Panels of diagnostics.png: (title, keys); a panel is drawn when any of its keys was logged.
DIAGNOSTIC_PANELS = (
    ("teacher − student log-prob gap", ("teacher/logp_gap", "teacher/logp_gap_success", "teacher/logp_gap_failure")),
    ("teacher gap by turn", ("teacher/logp_gap_first_turn", "teacher/logp_gap_later_turns",
                             "teacher/logp_gap_success_first_turn", "teacher/logp_gap_success_later_turns")),
    ("L_SDL (without λ)", ("self_distillation/sdl", "self_distillation/sdl_success", "self_distillation/sdl_failure")),
    ("skill coverage of the batch", ("skills/coverage",)),
    ("skill bank", ("skills/bank_size", "skills/added", "skills/duplicates")),
)
_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


class ExperimentConfigError(ValueError):
    """A field of an experiment YAML (or a command-line selection) is wrong; the message names it, on one line."""


# ---------------------------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class EvalSettings:
    test_levels: int | None = None  # held-out test levels (None: the whole test split)
    train_levels: int | None = None  # training tasks scored for "train Acc." (None: the tasks trained on; 0: skip)
    greedy: bool = True
    temperature: float = 1.0  # only when greedy is false
    batch_size: int | None = None  # None: the recipe's eval_batch_size


@dataclass
class Experiment:
    path: Path
    base_recipe: Path
    methods: dict[str, dict[str, Any]]
    seeds: list[int]
    level_seeds: list[int]
    max_steps: int
    eval_every: int
    output_dir: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    default_methods: list[str] = field(default_factory=list)
    reference_method: str = "grpo"
    eval: EvalSettings = field(default_factory=EvalSettings)
    summarizer_wait: float = 60.0

    def cell_dir(self, method: str, seed: int, level_seed: int) -> Path:
        return self.output_dir / "cells" / method / f"seed{seed}-levels{level_seed}"


def _fail(path, field_name: str, message: str):
    raise ExperimentConfigError(f"experiment config {str(path)!r}: {field_name}: {message}")


def _int_list(value, path, field_name: str) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)):
        _fail(path, field_name, f"must be a non-empty list of non-negative integers, got {value!r}")
    if len(set(value)) != len(value):
        _fail(path, field_name, f"has duplicates: {value!r}")
    return list(value)


def _positive_int(value, path, field_name: str, allow_none=False, allow_zero=False) -> int | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < (0 if allow_zero else 1):
        _fail(path, field_name, f"must be {'a non-negative' if allow_zero else 'a positive'} integer, got {value!r}")
    return value


def _recipe_fields() -> set[str]:
    from dataclasses import fields

    from .recipe import train_types

    return {f.name for t in train_types() for f in fields(t)} | {"env"}


def _check_overrides(overrides, path, field_name: str, known: set[str]) -> dict[str, Any]:
    if overrides is None:
        return {}
    if not isinstance(overrides, dict):
        _fail(path, field_name, f"must be a mapping of recipe option: value, got {overrides!r}")
    for key in overrides:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            _fail(path, f"{field_name}.{key}", f"unknown recipe option{hint}")
        if key in CONTROLLED:
            _fail(path, f"{field_name}.{key}", "is set by the experiment for every cell (seeds, level_seeds, "
                                               "max_steps, output_dir, summarizer_wait, eval); remove it")
    return dict(overrides)


def _read_experiment(path: Path, chain: tuple[Path, ...]) -> tuple[dict, Path]:
    """An experiment file's mapping, with what it ``extends`` filled in, and the folder its ``base_recipe`` is relative
    to (the folder of the file that names it).

    A file that ``extends: parent.yaml`` (relative to the current folder, else to its own folder) takes every key of
    the parent it does not set, except ``output_dir``, which is its own; ``overrides`` merge, the child's keys winning.
    """
    import yaml

    if not path.is_file():
        raise ExperimentConfigError(f"experiment config {str(path)!r} not found.")
    if path.resolve() in chain:
        _fail(chain[0], "extends", f"{str(path)!r} extends itself (through {' -> '.join(p.name for p in chain)})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ExperimentConfigError(f"experiment config {str(path)!r} is not valid YAML: "
                                    f"{' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise ExperimentConfigError(f"experiment config {str(path)!r} must be a YAML mapping.")
    for key in data:
        if key not in EXPERIMENT_KEYS:
            close = difflib.get_close_matches(str(key), EXPERIMENT_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            _fail(path, str(key), f"unknown experiment key{hint}; known: {', '.join(EXPERIMENT_KEYS)}")
    recipe_dir = path.resolve().parent
    parent_name = data.pop("extends", None)
    if parent_name is None:
        return data, recipe_dir
    if not isinstance(parent_name, str) or not parent_name:
        _fail(path, "extends", f"must be the path of another experiment file, got {parent_name!r}")
    candidates = [Path(parent_name)] if Path(parent_name).is_absolute() else [Path.cwd() / parent_name,
                                                                               recipe_dir / parent_name]
    parent_path = next((c for c in candidates if c.is_file()), candidates[-1])
    parent, parent_recipe_dir = _read_experiment(parent_path, (*chain, path.resolve()))
    parent.pop("output_dir", None)  # never inherited: a variant writing into its parent's cells would mix them
    merged = {**parent, **data}
    if isinstance(parent.get("overrides"), dict) and isinstance(data.get("overrides"), dict):
        merged["overrides"] = {**parent["overrides"], **data["overrides"]}
    return merged, (recipe_dir if "base_recipe" in data else parent_recipe_dir)


def load_experiment(path: str | os.PathLike) -> Experiment:
    """Read and check an experiment YAML; every error is one line naming the field."""
    import yaml

    path = Path(path)
    data, recipe_dir = _read_experiment(path, ())
    for key in ("base_recipe", "methods", "seeds", "max_steps", "eval_every"):
        if key not in data:
            _fail(path, key, "is required")

    base = data["base_recipe"]
    if not isinstance(base, str) or not base:
        _fail(path, "base_recipe", f"must be the path of a train recipe, got {base!r}")
    # relative to the current folder (commands run from the repository root), else to the experiment file's folder
    candidates = [Path(base)] if Path(base).is_absolute() else [Path.cwd() / base, recipe_dir / base]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        looked = ", ".join(str(c.parent) for c in candidates)
        _fail(path, "base_recipe", f"recipe file {base!r} not found (looked in {looked})")
    known = _recipe_fields()
    try:
        base_data = yaml.safe_load(found.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        _fail(path, "base_recipe", f"{base!r} is not valid YAML")
    if not isinstance(base_data, dict) or any(k not in known for k in base_data):
        bad = [k for k in base_data if k not in known] if isinstance(base_data, dict) else "not a mapping"
        _fail(path, "base_recipe", f"{base!r} is not a train recipe (unknown keys: {bad})")

    overrides = _check_overrides(data.get("overrides"), path, "overrides", known)
    methods_raw = data["methods"]
    if not isinstance(methods_raw, dict) or not methods_raw:
        _fail(path, "methods", f"must be a non-empty mapping of method name: recipe overrides, got {methods_raw!r}")
    methods = {}
    for name, over in methods_raw.items():
        if not isinstance(name, str) or not _NAME.match(name):
            _fail(path, "methods", f"method name {name!r} must be letters, digits, '_', '.', '+' or '-'")
        methods[name] = _check_overrides(over, path, f"methods.{name}", known)
        for key in SHARED_ONLY:
            if key in methods[name]:
                _fail(path, f"methods.{name}.{key}", "every method starts from the same base model: set it in "
                                                     "overrides, not per method")

    default_methods = data.get("default_methods") or list(methods)
    if not isinstance(default_methods, list):
        _fail(path, "default_methods", f"must be a list of method names, got {default_methods!r}")
    for m in default_methods:
        if m not in methods:
            _fail(path, "default_methods", f"unknown method {m!r} (defined: {', '.join(methods)})")
    reference = data.get("reference_method", "grpo")
    if not isinstance(reference, str):
        _fail(path, "reference_method", f"must be a method name, got {reference!r}")

    eval_raw = data.get("eval") or {}
    if not isinstance(eval_raw, dict):
        _fail(path, "eval", f"must be a mapping, got {eval_raw!r}")
    for key in eval_raw:
        if key not in EVAL_KEYS:
            _fail(path, f"eval.{key}", f"unknown eval setting; known: {', '.join(EVAL_KEYS)}")
    settings = EvalSettings(
        test_levels=_positive_int(eval_raw.get("test_levels"), path, "eval.test_levels", allow_none=True),
        train_levels=_positive_int(eval_raw.get("train_levels"), path, "eval.train_levels", allow_none=True,
                                   allow_zero=True),
        greedy=eval_raw.get("greedy", True),
        temperature=eval_raw.get("temperature", 1.0),
        batch_size=_positive_int(eval_raw.get("batch_size"), path, "eval.batch_size", allow_none=True),
    )
    if not isinstance(settings.greedy, bool):
        _fail(path, "eval.greedy", f"must be true or false, got {settings.greedy!r}")
    if not isinstance(settings.temperature, (int, float)) or settings.temperature <= 0:
        _fail(path, "eval.temperature", f"must be a positive number, got {settings.temperature!r}")

    wait = data.get("summarizer_wait", 60.0)
    if not isinstance(wait, (int, float)) or isinstance(wait, bool) or wait < 0:
        _fail(path, "summarizer_wait", f"must be a number of seconds >= 0, got {wait!r}")
    output_dir = data.get("output_dir") or f"outputs/experiments/{path.stem}"
    if not isinstance(output_dir, str):
        _fail(path, "output_dir", f"must be a folder path, got {output_dir!r}")

    return Experiment(
        path=path.resolve(), base_recipe=found.resolve(), methods=methods,
        seeds=_int_list(data["seeds"], path, "seeds"),
        level_seeds=_int_list(data.get("level_seeds", [0]), path, "level_seeds"),
        max_steps=_positive_int(data["max_steps"], path, "max_steps"),
        eval_every=_positive_int(data["eval_every"], path, "eval_every"),
        output_dir=Path(output_dir), overrides=overrides, default_methods=list(default_methods),
        reference_method=reference, eval=settings, summarizer_wait=float(wait),
    )


def parse_list(text: str, flag: str, kind=int) -> list:
    """``"0,1,2"`` → ``[0, 1, 2]``; a one-line error naming the flag otherwise."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        values = [kind(t) for t in items]
    except ValueError:
        raise ExperimentConfigError(f"{flag}: expected a comma-separated list of integers, got {text!r}") from None
    if not values or (kind is int and any(v < 0 for v in values)) or len(set(values)) != len(values):
        raise ExperimentConfigError(f"{flag}: expected a non-empty comma-separated list of distinct "
                                    f"{'non-negative integers' if kind is int else 'names'}, got {text!r}")
    return values


def cell_recipe(exp: Experiment, method: str, seed: int, level_seed: int, cell_dir: Path) -> dict[str, Any]:
    """A cell's effective train recipe: base recipe ← overrides ← method overrides ← the cell's own settings."""
    import yaml

    recipe = yaml.safe_load(exp.base_recipe.read_text(encoding="utf-8")) or {}
    recipe.update(exp.overrides)
    recipe.update(exp.methods[method])
    recipe.update({
        "seed": seed, "env_seed": level_seed, "max_steps": exp.max_steps, "output_dir": str(cell_dir / "run"),
        "summarizer_wait": exp.summarizer_wait, "logging_steps": 1, "eval_only": False,
        "evaluate_after_training": False, "save_strategy": "no", "push_to_hub": False,
    })
    return recipe


def cell_fingerprint(exp: Experiment, method: str, seed: int, level_seed: int) -> dict[str, Any]:
    """What makes a cell's result valid: its effective recipe (output_dir aside), steps and evaluation settings.

    A finished cell whose stored fingerprint differs from the current one was trained under another configuration:
    resuming or aggregating it with the others would compare unequal runs, so both refuse.
    """
    recipe = cell_recipe(exp, method, seed, level_seed, Path("."))
    for key in _NO_EFFECT_ON_A_CELL:
        recipe.pop(key, None)
    return json.loads(json.dumps({"recipe": recipe, "max_steps": exp.max_steps, "eval_every": exp.eval_every,
                                  "eval": vars(exp.eval)}, default=str))


#: Recipe keys a cell's result does not depend on: where it writes, and the train command's own final evaluation,
#: which a cell never runs (the runner evaluates with the experiment's ``eval`` settings).
_NO_EFFECT_ON_A_CELL = ("output_dir", "max_eval_samples", "eval_batch_size")


def _effective(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """``fingerprint`` with its recipe's keys that a cell does not depend on, or that hold their field's default,
    left out: a recipe that writes ``lora_dropout: 0.05`` runs the same cell as one that leaves it at the default."""
    defaults = _field_defaults()
    recipe = {k: v for k, v in fingerprint["recipe"].items()
              if k not in _NO_EFFECT_ON_A_CELL and not (k in defaults and defaults[k] == v)}
    return {**fingerprint, "recipe": recipe}


def _field_defaults() -> dict[str, Any]:
    from dataclasses import MISSING, fields

    from .recipe import train_types

    return {f.name: f.default for t in train_types() for f in fields(t) if f.default is not MISSING}


def check_fingerprint(exp: Experiment, method: str, seed: int, level_seed: int, stored: dict | None) -> None:
    current = _effective(cell_fingerprint(exp, method, seed, level_seed))
    if stored is not None:
        stored = _effective(stored)
    if stored is None or stored == current:
        return
    diff = sorted({k for k in set(stored["recipe"]) | set(current["recipe"])
                   if stored["recipe"].get(k) != current["recipe"].get(k)}
                  | {k for k in ("max_steps", "eval_every", "eval") if stored.get(k) != current.get(k)})
    raise ExperimentConfigError(
        f"cell {method}:{seed}:{level_seed} in {str(exp.output_dir)!r} was finished under another configuration "
        f"(differs in: {', '.join(diff)}); use a new --output-dir, or --force to re-run it")


#: Recipe keys that only shape training, never the step-0 model: cells differing only in these evaluate the same base
#: model on the same levels, so (greedy) they share one step-0 evaluation. An unlisted key keeps cells apart.
_TRAINING_ONLY = ("seed", "sdl_coef", "grpo_coef", "skill_source", "teacher_context", "teacher_sync_mode",
                  "rollout_policy", "skills_in_student_prompt", "use_vllm", "learning_rate", "summarizer",
                  "summarizer_wait", "skill_granularity", "teacher_sync_steps", "max_steps", "lora_dropout")


def base_eval_path(exp: Experiment, method: str, seed: int, level_seed: int) -> Path | None:
    """Where the step-0 evaluation of this cell is shared with every cell of the same base model and levels.

    ``None`` when it cannot be shared: sampled evaluation, or a model that depends on the training seed
    (``tiny_model`` builds a random model from it).
    """
    fingerprint = cell_fingerprint(exp, method, seed, level_seed)
    recipe = fingerprint["recipe"]
    if not exp.eval.greedy or recipe.get("tiny_model"):
        return None
    key = {"recipe": {k: v for k, v in recipe.items() if k not in _TRAINING_ONLY}, "eval": fingerprint["eval"]}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    return exp.output_dir / BASE_EVALS_DIR / f"levels{level_seed}-{digest}.json"


def _write_cell_spec(exp: Experiment, method: str, seed: int, level_seed: int) -> Path:
    import yaml

    cell_dir = exp.cell_dir(method, seed, level_seed).resolve()
    recipe = cell_recipe(exp, method, seed, level_seed, cell_dir)
    atomic_write(cell_dir / CELL_RECIPE, lambda f: yaml.safe_dump(recipe, f, sort_keys=False, allow_unicode=True))
    spec = {"method": method, "seed": seed, "level_seed": level_seed, "max_steps": exp.max_steps,
            "eval_every": exp.eval_every, "eval": vars(exp.eval), "experiment": str(exp.path),
            "base_recipe": str(exp.base_recipe), "method_overrides": exp.methods[method],
            "shared_overrides": exp.overrides, "fingerprint": cell_fingerprint(exp, method, seed, level_seed)}
    shared = base_eval_path(exp, method, seed, level_seed)
    spec["base_eval"] = str(shared.resolve()) if shared is not None else None
    atomic_write_json(cell_dir / CELL_FILE, spec)
    return cell_dir


def validate_cells(exp: Experiment, methods, seeds, level_seeds) -> None:
    """Parse every selected cell's recipe exactly as the cell will (TrlParser): bad values fail before any training."""
    import tempfile

    import yaml

    from .recipe import parse_train_args

    with tempfile.TemporaryDirectory(prefix="skill-sd-experiment-check-") as tmp:
        for method in methods:
            for seed in seeds[:1]:  # cells of a method differ only by seed values
                for level_seed in level_seeds[:1]:
                    recipe = cell_recipe(exp, method, seed, level_seed, Path(tmp) / "cell")
                    path = Path(tmp) / f"{method}.yaml"
                    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
                    try:
                        parse_train_args(["--config", str(path)])
                    except SystemExit as e:  # parse_train_args' own one-line errors
                        raise ExperimentConfigError(f"experiment config {str(exp.path)!r}: methods.{method}: "
                                                    f"{str(e.code).removeprefix('error: ')}") from None
                    except (ValueError, TypeError) as e:
                        raise ExperimentConfigError(f"experiment config {str(exp.path)!r}: methods.{method}: "
                                                    f"{' '.join(str(e).split())}") from None


# ---------------------------------------------------------------------------------------------------------------
# one cell (runs in its own process)
# ---------------------------------------------------------------------------------------------------------------
def peak_memory() -> dict[str, float | None]:
    """Peak memory of this process: resident set (VmHWM: reset by exec, unlike ru_maxrss) and accelerator (if any)."""
    rss = None
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    rss = int(line.split()[1]) / 1024.0
    except OSError:
        import resource

        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rss = maxrss / (1024.0 * 1024.0) if sys.platform == "darwin" else maxrss / 1024.0
    gpu = None
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            gpu = torch.cuda.max_memory_allocated() / (1024.0 * 1024.0)
    except Exception:  # noqa: BLE001 - memory accounting must never fail a finished run
        gpu = None
    return {"peak_rss_mb": rss, "peak_gpu_mb": gpu}


def machine_info() -> dict[str, Any]:
    """What a cell's timings depend on: CPU model, torch's CPU kernel level, core count and GPU (if any)."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpus": os.cpu_count(),
            "gpu": gpu}


def _make_curve_callback(trainer, script, spec: dict, cell_start: float):
    """A TrainerCallback: greedy test (and train-task) evaluation at step 0 and every ``eval_every`` steps, timed."""
    from transformers import TrainerCallback

    from .evaluation import evaluate
    from .rollout import episode_metrics

    env_spec = script.spec
    settings = spec["eval"]
    train_levels = settings["train_levels"]
    if train_levels is None:
        train_levels = script.max_train_samples  # the tasks trained on (None: the whole train split)
    common = dict(env=script.env_name, env_options=script.options(), limits=script.limits(),
                  batch_size=settings["batch_size"] or script.eval_batch_size,
                  completion_budget=trainer.args.max_completion_length, tokenizer=trainer.processing_class,
                  do_sample=not settings["greedy"], temperature=settings["temperature"], progress=False)

    class LearningCurveCallback(TrainerCallback):
        def __init__(self):
            self.evals: list[dict] = []
            self.steps: list[dict] = []
            self.train_seconds = 0.0
            self.eval_seconds = 0.0
            self._mark = None

        def _evaluate(self, step: int) -> None:
            start = time.perf_counter()
            model = trainer.accelerator.unwrap_model(trainer.model)
            was_training = model.training
            model.eval()
            try:
                test = evaluate(f"step {step}", split=script.eval_split or env_spec.eval_split, model=model,
                                max_samples=settings["test_levels"], **common)
                train = None
                if train_levels != 0:
                    train = evaluate(f"step {step}", split=script.train_split or env_spec.train_split, model=model,
                                     max_samples=train_levels, skip_samples=script.skip_train_samples, **common)
            finally:
                model.train(was_training)
            seconds = time.perf_counter() - start
            self.eval_seconds += seconds
            row = {"step": step, "test_acc": test.acc, "test_comp": test.comp, "test_reward": test.mean_reward,
                   "test_episodes": test.num_episodes, "train_acc": train.acc if train else None,
                   "train_comp": train.comp if train else None, "train_episodes": train.num_episodes if train else 0,
                   "train_seconds": self.train_seconds, "wall_seconds": time.perf_counter() - cell_start,
                   "eval_seconds": seconds,
                   # how the greedy episodes ended (turns, invalid actions, stop reasons), under the training logs'
                   # names: what explains a change of Acc. (for example a lost answer format)
                   "test_env": episode_metrics(test.episodes),
                   "train_env": episode_metrics(train.episodes) if train else None}
            self.evals.append(row)
            print(f"[experiment] step {step}: test Acc. {test.acc:.1f} Comp. {test.comp:.1f}"
                  + (f", train Acc. {train.acc:.1f}" if train else ""), flush=True)

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self._evaluate_base(int(state.global_step))
            self._mark = time.perf_counter()

        def _evaluate_base(self, step: int) -> None:
            """Step 0 is the same greedy evaluation of the same model in every cell that shares ``base_eval``:
            the first cell runs it, the others read it (marked ``shared``)."""
            shared = Path(spec["base_eval"]) if spec.get("base_eval") and step == 0 else None
            if shared is None:
                self._evaluate(step)
                return
            from filelock import FileLock

            shared.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(shared) + ".lock"):  # cells started together (--jobs): one evaluates, the others wait
                if shared.is_file():
                    row = json.loads(shared.read_text(encoding="utf-8"))
                    self.evals.append(dict(row, train_seconds=0.0, wall_seconds=time.perf_counter() - cell_start,
                                           eval_seconds=0.0, shared=True))
                    print(f"[experiment] step 0: test Acc. {row['test_acc']:.1f} (shared base evaluation {shared})",
                          flush=True)
                    return
                self._evaluate(step)
                atomic_write_json(shared, self.evals[-1])

        def on_step_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            seconds = now - self._mark
            self.train_seconds += seconds
            step = int(state.global_step)
            self.steps.append({"step": step, "seconds": seconds})
            if state.is_world_process_zero and (step % spec["eval_every"] == 0 or step == spec["max_steps"]):
                self._evaluate(step)
            self._mark = time.perf_counter()

    return LearningCurveCallback()


def _step_logs(log_history: list[dict]) -> dict[int, dict[str, float]]:
    """The last logged trainer metrics of each step (numeric values; the end-of-training summary row excluded)."""
    out: dict[int, dict[str, float]] = {}
    for row in log_history:
        if "step" not in row or "train_runtime" in row:
            continue
        values = {k: float(v) for k, v in row.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"}
        out.setdefault(int(row["step"]), {}).update(values)
    return out


def run_cell(cell_dir: str | os.PathLike) -> dict:
    """Train one cell from its ``cell.json`` + ``recipe.yaml`` and write ``result.json`` atomically (last)."""
    cell_start = time.perf_counter()
    cell_dir = Path(cell_dir)
    spec = json.loads((cell_dir / CELL_FILE).read_text(encoding="utf-8"))
    recipe_path = cell_dir / CELL_RECIPE

    import torch
    import transformers
    import trl

    from .recipe import parse_train_args
    from .train import build_trainer, method_label

    script, args, model_args, _ = parse_train_args(["--config", str(recipe_path)])
    trainer = build_trainer(script, args, model_args, recipe_path=str(recipe_path))
    curve = _make_curve_callback(trainer, script, spec, cell_start)
    trainer.add_callback(curve)  # after the summarizer callback: a step's skill wait is part of its training time
    trainer.train()
    if trainer.state.global_step != spec["max_steps"]:
        raise RuntimeError(f"cell stopped at step {trainer.state.global_step}, not max_steps={spec['max_steps']}: "
                           "cells must train equal optimizer steps")
    run_dir = Path(args.output_dir)
    if run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()  # nothing saved there (save_strategy "no"); keep the cell folder tidy
    if getattr(trainer, "skill_bank", None) is not None:
        trainer.skill_bank.save(cell_dir / "skill_bank.json")
    logs = _step_logs(trainer.state.log_history)
    steps = [dict(s, log=logs.get(s["step"], {})) for s in curve.steps]
    step_seconds = [s["seconds"] for s in curve.steps]
    memory = peak_memory()
    final = curve.evals[-1]
    result = {
        "method": spec["method"], "seed": spec["seed"], "level_seed": spec["level_seed"],
        "label": method_label(args), "model": "tiny (random)" if script.tiny_model else model_args.model_name_or_path,
        "max_steps": spec["max_steps"], "eval_every": spec["eval_every"], "eval_settings": spec["eval"],
        "fingerprint": spec["fingerprint"],
        "evals": curve.evals, "steps": steps,
        "final": {k: final[k] for k in ("step", "test_acc", "test_comp", "train_acc", "train_comp")},
        "train_seconds": curve.train_seconds, "eval_seconds": curve.eval_seconds,
        "wall_seconds": time.perf_counter() - cell_start,
        "mean_step_seconds": sum(step_seconds) / len(step_seconds),
        **memory,
        "peak_memory_mb": memory["peak_gpu_mb"] if memory["peak_gpu_mb"] is not None else memory["peak_rss_mb"],
        "memory_kind": "gpu_allocated" if memory["peak_gpu_mb"] is not None else "rss",
        "recipe": json.loads(json.dumps(_read_yaml(recipe_path), default=str)),
        "machine": machine_info(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
                     "python": sys.version.split()[0]},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(cell_dir / RESULT_FILE, result)
    return result


def _read_yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


# ---------------------------------------------------------------------------------------------------------------
# the matrix (parent process)
# ---------------------------------------------------------------------------------------------------------------
def _log_event(exp: Experiment, **event) -> None:
    exp.output_dir.mkdir(parents=True, exist_ok=True)
    with open(exp.output_dir / EVENTS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps({"time": time.time(), **event}) + "\n")


def _start_cell(cell_dir: Path, threads: int | None = None) -> subprocess.Popen:
    """Start ``python -m skill_sd_trl.experiment run-cell`` with its output going to the cell's log.

    ``threads``: the torch/OpenMP threads of the cell (``--jobs`` splits the cores between concurrent cells, so that
    two cells never fight over one core); ``None`` keeps the environment's setting.
    """
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    with open(cell_dir / CELL_LOG, "w", encoding="utf-8") as log:  # the child keeps its own handle
        return subprocess.Popen([sys.executable, "-m", "skill_sd_trl.experiment", "run-cell", str(cell_dir)],
                                stdout=log, stderr=subprocess.STDOUT, env=env)


def cell_threads(jobs: int, environ=os.environ, cpus: int | None = None) -> int | None:
    """Threads per cell when ``jobs`` cells run at once: the cores split evenly (at least one each); ``None`` (keep
    the environment's) for one job at a time or when ``OMP_NUM_THREADS`` is set explicitly."""
    if jobs <= 1 or environ.get("OMP_NUM_THREADS"):
        return None
    return max(1, (cpus or os.cpu_count() or 1) // jobs)


def _prepare_models(exp: Experiment, methods) -> None:
    """Build an embedded or warm-started base model once, before the first cell (so no cell's clock pays for it).

    ``resolve_model`` returns folders and Hub ids unchanged without loading anything.
    """
    from .models import resolve_model

    recipe = cell_recipe(exp, methods[0], 0, 0, exp.output_dir)  # the model is the same for every method
    if recipe.get("model_name_or_path") and not recipe.get("tiny_model"):
        resolve_model(recipe["model_name_or_path"])


def run_matrix(exp: Experiment, methods: list[str], seeds: list[int], level_seeds: list[int],
               force: bool = False, jobs: int = 1) -> list[tuple[str, int, int]]:
    """Run every unfinished cell, one process each and up to ``jobs`` at a time; returns the failed cells (the others'
    results are on disk)."""
    if jobs < 1:
        raise ExperimentConfigError(f"--jobs: must be a positive integer, got {jobs}")
    validate_cells(exp, methods, seeds, level_seeds)
    cells = [(m, s, lv) for m in methods for s in seeds for lv in level_seeds]
    todo = [c for c in cells if force or not (exp.cell_dir(*c) / RESULT_FILE).exists()]
    for cell in cells:
        if cell not in todo:
            stored = json.loads((exp.cell_dir(*cell) / RESULT_FILE).read_text(encoding="utf-8")).get("fingerprint")
            check_fingerprint(exp, *cell, stored)
    if todo:
        _prepare_models(exp, [c[0] for c in todo])
    threads = cell_threads(jobs)
    queue = []
    for i, (method, seed, level_seed) in enumerate(cells, 1):
        name = f"[{i}/{len(cells)}] {method} seed {seed} levels {level_seed}"
        if (method, seed, level_seed) not in todo:
            print(f"{name}: finished earlier, skipped", flush=True)
            _log_event(exp, event="skip", method=method, seed=seed, level_seed=level_seed)
        else:
            queue.append((name, (method, seed, level_seed)))
    failed, running = [], []
    while queue or running:
        while queue and len(running) < jobs:
            name, cell = queue.pop(0)
            running.append((name, cell, _start(exp, name, cell, threads), time.perf_counter()))
        time.sleep(0.2)
        for entry in [r for r in running if r[2].poll() is not None]:
            running.remove(entry)
            if not _finish(exp, *entry):
                failed.append(entry[1])
    return failed


def _start(exp: Experiment, name: str, cell: tuple[str, int, int], threads: int | None) -> subprocess.Popen:
    cell_dir = exp.cell_dir(*cell)
    for stale in (cell_dir / RESULT_FILE, cell_dir / "run"):  # a killed or forced cell starts clean
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    cell_dir = _write_cell_spec(exp, *cell)
    print(f"{name}: training {exp.max_steps} steps (log: {cell_dir / CELL_LOG})", flush=True)
    method, seed, level_seed = cell
    _log_event(exp, event="run", method=method, seed=seed, level_seed=level_seed)
    return _start_cell(cell_dir, threads)


def _finish(exp: Experiment, name: str, cell: tuple[str, int, int], proc: subprocess.Popen, start: float) -> bool:
    """Report a cell whose process ended; False when it failed."""
    method, seed, level_seed = cell
    cell_dir = exp.cell_dir(*cell)
    code = proc.returncode
    if code != 0 or not (cell_dir / RESULT_FILE).exists():
        tail = (cell_dir / CELL_LOG).read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
        print(f"{name}: FAILED (exit status {code}); last lines of {cell_dir / CELL_LOG}:\n  " + "\n  ".join(tail),
              file=sys.stderr, flush=True)
        _log_event(exp, event="fail", method=method, seed=seed, level_seed=level_seed, code=code)
        return False
    final = json.loads((cell_dir / RESULT_FILE).read_text(encoding="utf-8"))["final"]
    print(f"{name}: done in {time.perf_counter() - start:.1f} s, test Acc. {final['test_acc']:.1f}, Comp. "
          f"{final['test_comp']:.1f}", flush=True)
    _log_event(exp, event="done", method=method, seed=seed, level_seed=level_seed)
    return True


# ---------------------------------------------------------------------------------------------------------------
# aggregation
# ---------------------------------------------------------------------------------------------------------------
def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof=1; None with fewer than 2 values)."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def load_results(exp: Experiment, methods, seeds, level_seeds) -> tuple[list[dict], list[tuple[str, int, int]]]:
    cells, missing = [], []
    for m in methods:
        for s in seeds:
            for lv in level_seeds:
                path = exp.cell_dir(m, s, lv) / RESULT_FILE
                if path.exists():
                    cell = json.loads(path.read_text(encoding="utf-8"))
                    check_fingerprint(exp, m, s, lv, cell.get("fingerprint"))
                    cells.append(cell)
                else:
                    missing.append((m, s, lv))
    return cells, missing


def _curve(cells: list[dict], key: str = "test_acc") -> list[dict]:
    """Per eval step common to all cells: mean/std of ``key`` and mean training seconds."""
    if not cells:
        return []
    common = set.intersection(*({e["step"] for e in c["evals"]} for c in cells))
    rows = []
    for step in sorted(common):
        evs = [next(e for e in c["evals"] if e["step"] == step) for c in cells]
        mean, std = mean_std([e[key] for e in evs])
        t_mean, t_std = mean_std([e["train_seconds"] for e in evs])
        rows.append({"step": step, "mean": mean, "std": std, "train_seconds": t_mean, "train_seconds_std": t_std})
    return rows


def summarize(exp: Experiment, cells: list[dict], methods: list[str]) -> dict:
    """Per method: final test/train Acc./Comp. mean ± std over its cells, Δ vs base, speed/memory vs the reference."""
    by_method = {m: [c for c in cells if c["method"] == m] for m in methods}
    ref = exp.reference_method if by_method.get(exp.reference_method) else None
    ref_cells = by_method.get(ref, [])
    ref_final, _ = mean_std([c["final"]["test_acc"] for c in ref_cells])
    base_evals = [c["evals"][0] for c in cells if c["evals"] and c["evals"][0]["step"] == 0]
    summary: dict[str, Any] = {
        "reference_method": ref,
        "base": {"n": len(base_evals),
                 **_ms("test_acc", [e["test_acc"] for e in base_evals]),
                 **_ms("test_comp", [e["test_comp"] for e in base_evals]),
                 **_ms("train_acc", [e["train_acc"] for e in base_evals])},
        "methods": {},
    }
    for m, mine in by_method.items():
        if not mine:
            continue
        finals = [c["final"] for c in mine]
        curve = _curve(mine)
        step_mean, step_std = mean_std([c["mean_step_seconds"] for c in mine])
        mem_mean, mem_std = mean_std([c["peak_memory_mb"] for c in mine])
        reach = None
        if ref_final is not None:
            reach = next((r["step"] for r in curve if r["mean"] >= ref_final - 1e-9), None)
        deltas = [c["final"]["test_acc"] - c["evals"][0]["test_acc"] for c in mine if c["evals"][0]["step"] == 0]
        diagnostics = {}
        for c in mine:
            last = c["steps"][-1]["log"] if c["steps"] else {}
            for k, v in last.items():
                if k.startswith(DIAGNOSTIC_PREFIXES):
                    diagnostics.setdefault(k, []).append(v)
        summary["methods"][m] = {
            "n": len(mine), "label": mine[0].get("label"), "seeds": sorted({c["seed"] for c in mine}),
            "level_seeds": sorted({c["level_seed"] for c in mine}),
            **_ms("test_acc", [f["test_acc"] for f in finals]),
            **_ms("test_comp", [f["test_comp"] for f in finals]),
            **_ms("train_acc", [f["train_acc"] for f in finals]),
            **_ms("delta_acc", deltas),
            "steps_to_reference_final_acc": reach,
            "mean_step_seconds": step_mean, "mean_step_seconds_std": step_std,
            "peak_memory_mb": mem_mean, "peak_memory_mb_std": mem_std,
            "step_time_ratio": same_machine_ratio(mine, ref_cells, "mean_step_seconds"),
            "peak_memory_ratio": same_machine_ratio(mine, ref_cells, "peak_memory_mb"),
            "ratio_cells": sum(_machine_key(c) in {_machine_key(r) for r in ref_cells} for c in mine),
            "train_seconds": mean_std([c["train_seconds"] for c in mine])[0],
            "test_acc_curve": curve, "test_comp_curve": _curve(mine, "test_comp"),
            "final_diagnostics": {k: {"mean": mean_std(v)[0], "std": mean_std(v)[1], "n": len(v)}
                                  for k, v in sorted(diagnostics.items())},
        }
    summary["reference_final_test_acc"] = ref_final
    return summary


def _machine_key(cell: dict) -> str:
    return json.dumps(cell.get("machine"), sort_keys=True)


def same_machine_ratio(cells: list[dict], ref_cells: list[dict], key: str) -> float | None:
    """Mean over ``cells`` of ``cell[key]`` / the reference's mean on the same machine.

    Cells of one matrix may run sessions apart on different machines (AVX2 vs AVX512 kernels differ ~1.3x in step
    time), so a ratio across machines would measure the machines; a cell on a machine where the reference has no
    cell is left out. On one machine this is mean(cells) / mean(reference), as before."""
    ref_by_machine: dict[str, list[float]] = {}
    for r in ref_cells:
        if r.get(key) is not None:
            ref_by_machine.setdefault(_machine_key(r), []).append(r[key])
    ratios = [c[key] / mean_std(ref_by_machine[_machine_key(c)])[0] for c in cells
              if c.get(key) is not None and _machine_key(c) in ref_by_machine
              and mean_std(ref_by_machine[_machine_key(c)])[0]]
    return mean_std(ratios)[0]


def _ms(name: str, values) -> dict:
    mean, std = mean_std([v for v in values if v is not None])
    return {name: mean, f"{name}_std": std}


def _pm(mean, std) -> str:
    if mean is None:
        return "–"
    return f"{mean:.1f}" if std is None else f"{mean:.1f} ± {std:.1f}"


def format_table(exp: Experiment, summary: dict) -> str:
    """The paper-style Markdown table (percentages; ratios to the reference method)."""
    ref = summary["reference_method"] or exp.reference_method
    headers = ["method", "n", "test Acc.", "test Comp.", "Δ Acc. vs base", "train Acc.",
               f"steps to {ref}'s final test Acc.", f"step time ×{ref}", f"peak memory ×{ref}"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] * len(headers)) + "|"]
    b = summary["base"]
    lines.append("| " + " | ".join(["base model (step 0)", str(b["n"]), _pm(b["test_acc"], b["test_acc_std"]),
                                    _pm(b["test_comp"], b["test_comp_std"]), "–",
                                    _pm(b["train_acc"], b["train_acc_std"]), "–", "–", "–"]) + " |")
    for m, s in summary["methods"].items():
        delta = "–" if s["delta_acc"] is None else f"{s['delta_acc']:+.1f}"
        reach = "–" if summary["reference_final_test_acc"] is None else (
            f"not reached in {exp.max_steps}" if s["steps_to_reference_final_acc"] is None
            else str(s["steps_to_reference_final_acc"]))
        ratio = lambda r: "–" if r is None else f"{r:.2f}"  # noqa: E731
        lines.append("| " + " | ".join([m, str(s["n"]), _pm(s["test_acc"], s["test_acc_std"]),
                                        _pm(s["test_comp"], s["test_comp_std"]), delta,
                                        _pm(s["train_acc"], s["train_acc_std"]), reach,
                                        ratio(s["step_time_ratio"]), ratio(s["peak_memory_ratio"])]) + " |")
    return "\n".join(lines)


def table_notes(exp: Experiment, summary: dict, cells: list[dict], missing) -> str:
    kinds = sorted({c.get("memory_kind", "rss") for c in cells})
    ns = sorted({s["n"] for s in summary["methods"].values()})
    notes = [
        f"Final step {exp.max_steps} (equal optimizer steps for every method); Acc./Comp. in %, greedy, plain prompt, "
        f"held-out test levels (eval.test_levels={exp.eval.test_levels}); n = cells (seeds × level seeds) per row; "
        f"± is the sample standard deviation (ddof=1), shown only when n ≥ 2 (n here: {', '.join(map(str, ns))}).",
        "Δ Acc. vs base: mean over cells of (final − step-0) test Acc.; steps to the reference's final Acc.: first "
        "evaluated step where the method's mean curve reaches the reference's final mean.",
        f"Ratios: each of the method's cells divided by the mean of the reference's cells on the same machine, "
        f"averaged over the method's cells (step time: training seconds per optimizer step, evaluation excluded; "
        f"memory: peak {'/'.join(kinds)} of the cell's process).",
    ]
    machines = sorted({json.dumps(c["machine"], sort_keys=True) for c in cells if c.get("machine")})
    if len(machines) > 1:
        described = "; ".join(_describe_machine(json.loads(m)) for m in machines)
        notes.append(f"The cells ran on {len(machines)} different machines ({described}): each step-time and memory "
                     "ratio compares a cell with the reference's cells on the same machine (a cell on a machine "
                     "without a reference cell is left out of the ratios); Acc. is comparable.")
    elif machines:
        notes.append(f"Machine: {_describe_machine(json.loads(machines[0]))}.")
    if missing:
        notes.append(f"Missing cells (not run or failed): {', '.join(f'{m}:{s}:{lv}' for m, s, lv in missing)}.")
    runs = {m: sorted((c["seed"], c["level_seed"]) for c in cells if c["method"] == m) for m in summary["methods"]}
    if len({tuple(r) for r in runs.values()}) > 1:  # a mean over other seeds is not a comparison at equal seeds
        described = "; ".join(f"{m}: {', '.join(f'{s}:{lv}' for s, lv in r) or 'none'}" for m, r in runs.items())
        notes.append(f"The methods ran on different seeds (seed:level seed — {described}): their means are not "
                     "comparable at equal seeds; compare the per-cell results of the seeds they share.")
    return "\n".join(f"- {n}" for n in notes)


def _describe_machine(m: dict) -> str:
    return f"{m.get('cpu')}, {m.get('cpus')} cores, torch CPU kernels {m.get('cpu_capability')}" + (
        f", GPU {m['gpu']}" if m.get("gpu") else "")


def write_curves(exp: Experiment, summary: dict, output_dir: Path) -> list[Path]:
    """Test Acc. vs step and vs training wall-clock (mean line, ±std band over cells), plus diagnostics if logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for filename, x_key, xlabel in ((CURVE_STEP_FILE, "step", "optimizer step"),
                                    (CURVE_TIME_FILE, "train_seconds", "training wall-clock (s, evaluation excluded)")):
        fig, ax = plt.subplots(figsize=(6.4, 4), dpi=100)
        for m, s in summary["methods"].items():
            curve = s["test_acc_curve"]
            xs = [r[x_key] for r in curve]
            ys = [r["mean"] for r in curve]
            line, = ax.plot(xs, ys, marker="o", markersize=3, label=f"{m} (n={s['n']})")
            if s["n"] >= 2:
                lo = [r["mean"] - (r["std"] or 0.0) for r in curve]
                hi = [r["mean"] + (r["std"] or 0.0) for r in curve]
                ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        if x_key == "step":
            integer_step_ticks(ax, [r["step"] for s in summary["methods"].values() for r in s["test_acc_curve"]])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test Acc. (%)")
        ax.set_title("Held-out test Acc. (mean ± std over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = output_dir / filename
        atomic_write(path, lambda f: fig.savefig(f, format="png"), binary=True)
        plt.close(fig)
        written.append(path)
    return written


def write_diagnostics(cells: list[dict], methods: list[str], output_dir: Path) -> Path | None:
    """diagnostics.png: per-step trainer diagnostics (mean over a method's cells), one panel per logged group."""
    panels = []
    for title, keys in DIAGNOSTIC_PANELS:
        present = [k for k in keys if any(k in s["log"] for c in cells for s in c["steps"])]
        if present:
            panels.append((title, present))
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(6.4, 2.6 * len(panels)), dpi=100, squeeze=False)
    for ax, (title, keys) in zip(axes[:, 0], panels):
        for m in methods:
            mine = [c for c in cells if c["method"] == m]
            for k in keys:
                steps = sorted({s["step"] for c in mine for s in c["steps"] if k in s["log"]})
                if not steps:
                    continue
                ys = [mean_std([s["log"][k] for c in mine for s in c["steps"] if s["step"] == st and k in s["log"]])[0]
                      for st in steps]
                ax.plot(steps, ys, marker="o", markersize=2, label=f"{m}: {k}")
        ax.set_title(title, fontsize=9)
        integer_step_ticks(ax, [s["step"] for c in cells for s in c["steps"]])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    axes[-1, 0].set_xlabel("optimizer step")
    fig.tight_layout()
    path = output_dir / DIAGNOSTICS_FILE
    atomic_write(path, lambda f: fig.savefig(f, format="png"), binary=True)
    plt.close(fig)
    return path


def aggregate(exp: Experiment, methods: list[str], seeds: list[int], level_seeds: list[int]) -> dict:
    """results.json + table.md + PNG curves from the finished cells; prints the table."""
    cells, missing = load_results(exp, methods, seeds, level_seeds)
    if not cells:
        raise ExperimentConfigError(f"no finished cell under {str(exp.output_dir / 'cells')!r} for methods "
                                    f"{', '.join(methods)}; run the experiment first.")
    summary = summarize(exp, cells, methods)
    table = format_table(exp, summary)
    notes = table_notes(exp, summary, cells, missing)
    out = exp.output_dir
    atomic_write(out / TABLE_FILE, lambda f: f.write(table + "\n\n" + notes + "\n"))
    pngs = write_curves(exp, summary, out)
    diag = write_diagnostics(cells, methods, out)
    atomic_write_json(out / RESULTS_FILE, {
        "experiment": {"config": str(exp.path), "base_recipe": str(exp.base_recipe), "methods": methods,
                       "seeds": seeds, "level_seeds": level_seeds, "max_steps": exp.max_steps,
                       "eval_every": exp.eval_every, "eval": vars(exp.eval), "summarizer_wait": exp.summarizer_wait,
                       "method_overrides": {m: exp.methods[m] for m in methods}, "shared_overrides": exp.overrides},
        "summary": summary, "missing": [list(c) for c in missing], "table_markdown": table, "cells": cells,
    })
    print("\n" + table + "\n\n" + notes + "\n")
    for path in [out / RESULTS_FILE, out / TABLE_FILE, *pngs, *([diag] if diag else [])]:
        print(f"wrote {path}")
    return summary


# ---------------------------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="skill-sd-trl experiment",
        description="Train a matrix of methods × seeds × level seeds at equal optimizer steps, then aggregate "
                    "(docs/experiments.md).")
    p.add_argument("--config", required=True,
                   help="Experiment YAML, e.g. recipes/sokoban/experiments/experiment_cpu.yaml.")
    p.add_argument("--methods", help="Comma-separated method names (default: the config's default_methods).")
    p.add_argument("--seeds", help="Comma-separated training seeds (default: the config's seeds).")
    p.add_argument("--level-seeds", help="Comma-separated Sokoban level-set seeds, env_seed (default: the config's).")
    p.add_argument("--cell", help="Run one cell alone: METHOD:SEED or METHOD:SEED:LEVEL_SEED (no aggregation).")
    p.add_argument("--output-dir", help="Override the config's output_dir.")
    p.add_argument("--max-steps", type=int, help="Override the config's max_steps (e.g. a short timing run).")
    p.add_argument("--eval-every", type=int, help="Override the config's eval_every.")
    p.add_argument("--aggregate-only", action="store_true", help="Train nothing: aggregate the finished cells.")
    p.add_argument("--force", action="store_true", help="Re-run selected cells even if they have a result.")
    p.add_argument("--jobs", type=int, default=1,
                   help="Cells trained at once (default 1); the cores are split between them (OMP_NUM_THREADS).")
    return p


def _select(exp: Experiment, a) -> tuple[list[str], list[int], list[int]]:
    methods = parse_list(a.methods, "--methods", str) if a.methods else list(exp.default_methods)
    for m in methods:
        if m not in exp.methods:
            close = difflib.get_close_matches(m, list(exp.methods), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ExperimentConfigError(f"--methods: unknown method {m!r}{hint}; defined in "
                                        f"{str(exp.path)!r}: {', '.join(exp.methods)}")
    seeds = parse_list(a.seeds, "--seeds") if a.seeds else list(exp.seeds)
    level_seeds = parse_list(a.level_seeds, "--level-seeds") if a.level_seeds else list(exp.level_seeds)
    return methods, seeds, level_seeds


def _parse_cell(exp: Experiment, text: str, level_seeds: list[int]) -> tuple[str, int, int]:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ExperimentConfigError(f"--cell: expected METHOD:SEED or METHOD:SEED:LEVEL_SEED, got {text!r}")
    method = parts[0]
    if method not in exp.methods:
        raise ExperimentConfigError(f"--cell: unknown method {method!r}; defined: {', '.join(exp.methods)}")
    try:
        seed = int(parts[1])
        level_seed = int(parts[2]) if len(parts) == 3 else None
    except ValueError:
        raise ExperimentConfigError(f"--cell: seeds must be integers, got {text!r}") from None
    if level_seed is None:
        if len(level_seeds) != 1:
            raise ExperimentConfigError(f"--cell: several level seeds ({level_seeds}); "
                                        f"say which: {method}:{seed}:LEVEL")
        level_seed = level_seeds[0]
    return method, seed, level_seed


def experiment_main(argv: list[str]) -> int:
    """``skill-sd-trl experiment ...``: run (resumably) and aggregate; config errors exit with one line."""
    a = _parser().parse_args(argv)
    try:
        exp = load_experiment(a.config)
        if a.output_dir:
            exp.output_dir = Path(a.output_dir)
        for flag, name in (("--max-steps", "max_steps"), ("--eval-every", "eval_every")):
            value = getattr(a, name)
            if value is not None:
                if value < 1:
                    raise ExperimentConfigError(f"{flag}: must be a positive integer, got {value}")
                setattr(exp, name, value)
        if a.jobs < 1:
            raise ExperimentConfigError(f"--jobs: must be a positive integer, got {a.jobs}")
        methods, seeds, level_seeds = _select(exp, a)
        if a.cell:
            method, seed, level_seed = _parse_cell(exp, a.cell, level_seeds)
            failed = run_matrix(exp, [method], [seed], [level_seed], force=a.force, jobs=a.jobs)
            return 1 if failed else 0
        failed = [] if a.aggregate_only else run_matrix(exp, methods, seeds, level_seeds, force=a.force, jobs=a.jobs)
        aggregate(exp, methods, seeds, level_seeds)
    except ExperimentConfigError as e:
        raise SystemExit(f"error: {e}") from None
    if failed:
        print(f"error: {len(failed)} cell(s) failed: {', '.join(f'{m}:{s}:{lv}' for m, s, lv in failed)}; "
              "their logs are in cells/<method>/seed<k>-levels<l>/log.txt; run the command again to retry them.",
              file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    if argv and argv[0] == "run-cell":
        if len(argv) != 2:
            raise SystemExit("usage: python -m skill_sd_trl.experiment run-cell <cell dir>")
        run_cell(argv[1])
        return 0
    return experiment_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
