"""An experiment's specification: the YAML file (with ``extends``), its checks (one-line errors naming the field),
each cell's effective recipe and the fingerprint that makes a finished cell's result valid.

The experiment knows no environment: the task set a cell trains and evaluates on is the value of the environment's
``task_set_arg`` in ``env_args`` (Sokoban's level seed, the app world's world seed), and the held-out tasks are the
environment's evaluation split.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import atomic_write, atomic_write_json

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
                   "task_sets", "max_steps", "eval_every", "eval", "summarizer_wait", "output_dir")
EVAL_KEYS = ("test_tasks", "train_tasks", "extra_splits", "greedy", "temperature", "batch_size")
#: Keys of earlier versions, and what replaced them (a one-line error says so).
RENAMED_KEYS = {"level_seeds": "task_sets", "test_levels": "test_tasks", "train_levels": "train_tasks"}
# Recipe fields the experiment itself sets per cell: a method or the shared overrides may not change them.
CONTROLLED = ("seed", "max_steps", "output_dir", "summarizer_wait", "max_eval_samples", "eval_only",
              "evaluate_after_training", "logging_steps", "resume_from_checkpoint", "method")
# The base model: shared by every method (set it in `overrides`, never per method).
SHARED_ONLY = ("model_name_or_path", "model_revision", "tiny_model")
_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


class ExperimentConfigError(ValueError):
    """A field of an experiment YAML (or a command-line selection) is wrong; the message names it, on one line."""


# ---------------------------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class EvalSettings:
    test_tasks: int | None = None  # held-out tasks (None: the environment's whole evaluation split)
    train_tasks: int | None = None  # training tasks scored for "train Acc." (None: the tasks trained on; 0: skip)
    greedy: bool = True
    temperature: float = 1.0  # only when greedy is false
    batch_size: int | None = None  # None: the recipe's eval_batch_size
    extra_splits: list[str] = field(default_factory=list)  # further held-out splits of the environment, scored whole


@dataclass
class Experiment:
    path: Path
    base_recipe: Path
    methods: dict[str, dict[str, Any]]  # name -> recipe overrides, the method's options filled in
    seeds: list[int]
    task_sets: list[int]
    max_steps: int
    eval_every: int
    output_dir: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    default_methods: list[str] = field(default_factory=list)
    reference_method: str = "grpo"
    eval: EvalSettings = field(default_factory=EvalSettings)
    summarizer_wait: float = 60.0
    task_set_arg: str | None = "seed"  # the environment's option that picks its task set (EnvSpec.task_set_arg)

    def cell_dir(self, method: str, seed: int, task_set: int) -> Path:
        return self.output_dir / "cells" / method / f"seed{seed}-tasks{task_set}"


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

    from ..app.recipe import train_types

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
            _fail(path, f"{field_name}.{key}", "is set by the experiment for every cell (seeds, task_sets, "
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
        if key in RENAMED_KEYS:
            _fail(path, str(key), f"is now {RENAMED_KEYS[key]} (the experiment names no environment)")
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
        merged["overrides"] = overlay(parent["overrides"], data["overrides"])
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
        methods[name] = _method_options(name, over, path, known)
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
        if key in RENAMED_KEYS:
            _fail(path, f"eval.{key}", f"is now eval.{RENAMED_KEYS[key]} (the experiment names no environment)")
        if key not in EVAL_KEYS:
            _fail(path, f"eval.{key}", f"unknown eval setting; known: {', '.join(EVAL_KEYS)}")
    settings = EvalSettings(
        test_tasks=_positive_int(eval_raw.get("test_tasks"), path, "eval.test_tasks", allow_none=True),
        train_tasks=_positive_int(eval_raw.get("train_tasks"), path, "eval.train_tasks", allow_none=True,
                                  allow_zero=True),
        greedy=eval_raw.get("greedy", True),
        temperature=eval_raw.get("temperature", 1.0),
        batch_size=_positive_int(eval_raw.get("batch_size"), path, "eval.batch_size", allow_none=True),
        extra_splits=eval_raw.get("extra_splits") or [],
    )
    if not isinstance(settings.extra_splits, list) or not all(isinstance(s, str) for s in settings.extra_splits):
        _fail(path, "eval.extra_splits", f"must be a list of split names, got {settings.extra_splits!r}")
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

    exp = Experiment(
        path=path.resolve(), base_recipe=found.resolve(), methods=methods,
        seeds=_int_list(data["seeds"], path, "seeds"),
        task_sets=_int_list(data.get("task_sets", [0]), path, "task_sets"),
        max_steps=_positive_int(data["max_steps"], path, "max_steps"),
        eval_every=_positive_int(data["eval_every"], path, "eval_every"),
        output_dir=Path(output_dir), overrides=overrides, default_methods=list(default_methods),
        reference_method=reference, eval=settings, summarizer_wait=float(wait),
    )
    exp.task_set_arg = _task_set_arg(exp, path)
    return exp


def _task_set_arg(exp: Experiment, path) -> str | None:
    """The environment's option that picks a task set; an environment without one runs a single task set."""
    from ..envs.registry import load_environment

    recipe = _shared_recipe(exp)
    try:
        spec = load_environment(recipe.get("env_name", "sokoban"), recipe.get("env_args"))
    except ValueError as e:
        _fail(path, "base_recipe", str(e))
    arg = spec.task_set_arg
    if arg is None and len(exp.task_sets) > 1:
        _fail(path, "task_sets", f"environment {spec.name} has one task set (no task_set_arg); use task_sets: [0]")
    if arg is not None and arg in (recipe.get("env_args") or {}):
        _fail(path, f"overrides.env_args.{arg}", "is the task set, which the experiment sets per cell (task_sets)")
    for split in exp.eval.extra_splits:
        try:
            spec.dataset(split)
        except ValueError as e:
            _fail(path, "eval.extra_splits", str(e))
    return arg


def _method_options(name: str, over, path, known: set[str]) -> dict[str, Any]:
    """A method entry's effective overrides: the named method's options (``method:``, else the entry's own name
    when it names a method) with the entry's other keys on top."""
    from ..app.methods import METHODS, with_method

    over = dict(over or {}) if isinstance(over, dict) or over is None else over
    if not isinstance(over, dict):
        _fail(path, f"methods.{name}", f"must be a mapping of recipe option: value, got {over!r}")
    chosen = over.get("method", name if name in METHODS else None)
    if chosen is None:
        _fail(path, f"methods.{name}", f"say which method it is (method: one of {', '.join(METHODS)}); its options "
                                       "are filled in, the entry's own keys win")
    if chosen not in METHODS:
        close = difflib.get_close_matches(str(chosen), list(METHODS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        _fail(path, f"methods.{name}.method", f"{chosen!r} is not a method{hint}; choose one of {', '.join(METHODS)}")
    checked = _check_overrides({k: v for k, v in over.items() if k != "method"}, path, f"methods.{name}", known)
    return with_method(checked, chosen)


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


def overlay(recipe: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``recipe`` with ``overrides`` on top; ``env_args`` merge option by option (an override that sets one option
    of the environment keeps the others)."""
    merged = {**recipe, **overrides}
    if isinstance(recipe.get("env_args"), dict) and isinstance(overrides.get("env_args"), dict):
        merged["env_args"] = {**recipe["env_args"], **overrides["env_args"]}
    return merged


def _shared_recipe(exp: Experiment) -> dict[str, Any]:
    """The base recipe with its method's options filled in, under the experiment's shared overrides."""
    from ..app.methods import with_method

    return overlay(with_method(yaml_mapping(exp.base_recipe)), exp.overrides)


def yaml_mapping(path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def cell_recipe(exp: Experiment, method: str, seed: int, task_set: int, cell_dir: Path) -> dict[str, Any]:
    """A cell's effective train recipe: base recipe ← overrides ← the method's options ← the cell's own settings
    (its seed, and its task set in ``env_args``)."""
    recipe = overlay(_shared_recipe(exp), exp.methods[method])
    if exp.task_set_arg is not None:
        recipe["env_args"] = {**(recipe.get("env_args") or {}), exp.task_set_arg: task_set}
    recipe.update({
        "seed": seed, "max_steps": exp.max_steps, "output_dir": str(cell_dir / "run"),
        "summarizer_wait": exp.summarizer_wait, "logging_steps": 1, "eval_only": False,
        "evaluate_after_training": False, "save_strategy": "no", "push_to_hub": False,
    })
    return recipe


def cell_fingerprint(exp: Experiment, method: str, seed: int, task_set: int) -> dict[str, Any]:
    """What makes a cell's result valid: its effective recipe (output_dir aside), steps and evaluation settings.

    A finished cell whose stored fingerprint differs from the current one was trained under another configuration:
    resuming or aggregating it with the others would compare unequal runs, so both refuse.
    """
    recipe = cell_recipe(exp, method, seed, task_set, Path("."))
    for key in _NO_EFFECT_ON_A_CELL:
        recipe.pop(key, None)
    return json.loads(json.dumps({"recipe": recipe, "max_steps": exp.max_steps, "eval_every": exp.eval_every,
                                  "eval": vars(exp.eval)}, default=str))


#: Recipe keys a cell's result does not depend on: where it writes, and the train command's own final evaluation,
#: which a cell never runs (the runner evaluates with the experiment's ``eval`` settings).
_NO_EFFECT_ON_A_CELL = ("output_dir", "max_eval_samples", "eval_batch_size")


def _effective(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """``fingerprint`` with its recipe's keys that a cell does not depend on, or that hold their default, left out:
    a recipe that writes ``lora_dropout: 0.05`` runs the same cell as one that leaves it at the default, and an
    ``env_args`` option at the environment's default the same as one left out. A fingerprint stored by an earlier
    version (the environment's options as ``env_*`` recipe keys, ``test_levels``/``train_levels``) reads as today's."""
    from ..app.recipe import LEGACY_ENV_KEYS
    from ..envs.registry import default_env_args

    recipe = dict(fingerprint["recipe"])
    env_args = dict(recipe.pop("env_args", None) or {})
    for old, new in LEGACY_ENV_KEYS.items():
        value = recipe.pop(old, None)
        if value is not None:
            env_args.setdefault(new, value)
    env_defaults = default_env_args(recipe.get("env_name", "sokoban"))
    env_args = {k: v for k, v in env_args.items() if not (k in env_defaults and env_defaults[k] == v)}
    defaults = _field_defaults()
    recipe = {k: v for k, v in recipe.items()
              if k not in _NO_EFFECT_ON_A_CELL and not (k in defaults and defaults[k] == v)}
    if env_args:
        recipe["env_args"] = env_args
    evaluation = {RENAMED_KEYS.get(k, k): v for k, v in fingerprint.get("eval", {}).items()
                  if not (k == "extra_splits" and not v)}  # none: as before the option existed
    return {**fingerprint, "recipe": recipe, "eval": evaluation}


def _field_defaults() -> dict[str, Any]:
    from dataclasses import MISSING, fields

    from ..app.recipe import train_types

    return {f.name: f.default for t in train_types() for f in fields(t) if f.default is not MISSING}


def check_fingerprint(exp: Experiment, method: str, seed: int, task_set: int, stored: dict | None) -> None:
    current = _effective(cell_fingerprint(exp, method, seed, task_set))
    if stored is not None:
        stored = _effective(stored)
    if stored is None or stored == current:
        return
    diff = sorted({k for k in set(stored["recipe"]) | set(current["recipe"])
                   if stored["recipe"].get(k) != current["recipe"].get(k)}
                  | {k for k in ("max_steps", "eval_every", "eval") if stored.get(k) != current.get(k)})
    raise ExperimentConfigError(
        f"cell {method}:{seed}:{task_set} in {str(exp.output_dir)!r} was finished under another configuration "
        f"(differs in: {', '.join(diff)}); use a new --output-dir, or --force to re-run it")


#: Recipe keys that only shape training, never the step-0 model: cells differing only in these evaluate the same base
#: model on the same tasks, so (greedy) they share one step-0 evaluation. An unlisted key keeps cells apart.
_TRAINING_ONLY = ("seed", "sdl_coef", "grpo_coef", "skill_source", "teacher_context", "teacher_sync_mode",
                  "rollout_policy", "skills_in_student_prompt", "use_vllm", "learning_rate", "summarizer",
                  "summarizer_wait", "skill_granularity", "teacher_sync_steps", "max_steps", "lora_dropout",
                  "sdl_reduction", "sdl_estimator", "sdl_topk", "sdl_is_clip", "sdl_log_ratio_clamp", "bank_scope",
                  "log_loss_grad_norms", "bank_demonstrations", "bank_path",
                  # how a step's rollouts are split into micro-batches for the loss (memory), not what is evaluated
                  "per_device_train_batch_size", "gradient_accumulation_steps")


def base_eval_path(exp: Experiment, method: str, seed: int, task_set: int) -> Path | None:
    """Where the step-0 evaluation of this cell is shared with every cell of the same base model and tasks.

    ``None`` when it cannot be shared: sampled evaluation, or a model that depends on the training seed
    (``tiny_model`` builds a random model from it).
    """
    fingerprint = cell_fingerprint(exp, method, seed, task_set)
    recipe = fingerprint["recipe"]
    if not exp.eval.greedy or recipe.get("tiny_model"):
        return None
    key = {"recipe": {k: v for k, v in recipe.items() if k not in _TRAINING_ONLY}, "eval": fingerprint["eval"]}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    return exp.output_dir / BASE_EVALS_DIR / f"tasks{task_set}-{digest}.json"


def _write_cell_spec(exp: Experiment, method: str, seed: int, task_set: int) -> Path:
    import yaml

    cell_dir = exp.cell_dir(method, seed, task_set).resolve()
    recipe = cell_recipe(exp, method, seed, task_set, cell_dir)
    atomic_write(cell_dir / CELL_RECIPE, lambda f: yaml.safe_dump(recipe, f, sort_keys=False, allow_unicode=True))
    spec = {"method": method, "seed": seed, "task_set": task_set, "max_steps": exp.max_steps,
            "eval_every": exp.eval_every, "eval": vars(exp.eval), "experiment": str(exp.path),
            "base_recipe": str(exp.base_recipe), "method_overrides": exp.methods[method],
            "shared_overrides": exp.overrides, "fingerprint": cell_fingerprint(exp, method, seed, task_set)}
    shared = base_eval_path(exp, method, seed, task_set)
    spec["base_eval"] = str(shared.resolve()) if shared is not None else None
    atomic_write_json(cell_dir / CELL_FILE, spec)
    return cell_dir


def validate_cells(exp: Experiment, methods, seeds, task_sets) -> None:
    """Parse every selected cell's recipe exactly as the cell will (TrlParser): bad values fail before any training."""
    import tempfile

    import yaml

    from ..app.recipe import parse_train_args

    with tempfile.TemporaryDirectory(prefix="skill-sd-experiment-check-") as tmp:
        for method in methods:
            for seed in seeds[:1]:  # cells of a method differ only by seed values
                for task_set in task_sets[:1]:
                    recipe = cell_recipe(exp, method, seed, task_set, Path(tmp) / "cell")
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
