"""MkDocs hook: pages generated from the code at build time, so the docs cannot drift from it.

Markers replaced in the Markdown of any page (``hooks: [docs/hooks.py]`` in ``mkdocs.yml``):

- ``<!-- CONFIG_REFERENCE -->``: one section per field that :class:`~skill_sd_trl.SkillSDConfig` adds to
  ``trl.GRPOConfig`` (type, default, choices, help), read from the dataclass itself.
- ``<!-- SCRIPT_ARGS_REFERENCE -->``: the same for the recipe-only options of the ``train`` command
  (``skill_sd_trl.app.script_args.SkillSDScriptArguments``: environment, skill pipeline, evaluation).
- ``<!-- RECIPES_TABLE -->``: the recipe files found under ``recipes/`` at build time, one table per environment,
  with each recipe's description (its first comment line) and the Skill-SD settings it chooses; ``accelerate``
  launcher configurations found there get their own table.
- ``<!-- SOKOBAN_PRESETS -->``: the Sokoban task-set presets (``skill_sd_trl.envs.sokoban.PRESETS``).
- ``<!-- ENV_REGISTRY -->``: the environments registered under the entry-point group ``skill_sd_trl.environments``,
  with their splits, limits and options (the parameters of their ``load_environment``).
- ``<!-- METHODS_TABLE -->``: the methods of ``skill_sd_trl.app.methods`` (name, paper row, options).

The functions are importable without MkDocs (``tests/test_docs.py`` calls them directly).
"""

from __future__ import annotations

import dataclasses
import html
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIG_MARKER = "<!-- CONFIG_REFERENCE -->"
SCRIPT_ARGS_MARKER = "<!-- SCRIPT_ARGS_REFERENCE -->"
RECIPES_MARKER = "<!-- RECIPES_TABLE -->"
PRESETS_MARKER = "<!-- SOKOBAN_PRESETS -->"
REGISTRY_MARKER = "<!-- ENV_REGISTRY -->"
METHODS_MARKER = "<!-- METHODS_TABLE -->"

# The options in which the paper's methods differ; a recipe's values for these are shown in the recipes table.
RECIPE_SETTINGS = (
    "method",
    "sdl_coef",
    "grpo_coef",
    "sdl_estimator",
    "teacher_context",
    "teacher_sync_mode",
    "teacher_ema_rate",
    "rollout_policy",
    "skills_in_student_prompt",
    "skill_source",
    "eval_only",
)
CPU_SUFFIX = "_cpu"


def _import(module: str):
    """Import a ``skill_sd_trl`` module from the installed package, or from this checkout when not installed."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name is None or not err.name.startswith("skill_sd_trl"):
            raise  # a real missing dependency (trl, torch): say so instead of hiding it
        sys.path.insert(0, str(ROOT))
        return importlib.import_module(module)


# ---------------------------------------------------------------------------------------------------------------
# Dataclass references
# ---------------------------------------------------------------------------------------------------------------
def new_config_fields() -> list[dataclasses.Field]:
    """The dataclass fields of ``SkillSDConfig`` that ``GRPOConfig`` does not have, in declaration order."""
    from trl import GRPOConfig

    config = _import("skill_sd_trl.method.config")
    parent = {f.name for f in dataclasses.fields(GRPOConfig)}
    return [f for f in dataclasses.fields(config.SkillSDConfig) if f.name not in parent]


def script_args_fields() -> list[dataclasses.Field]:
    """The fields of the ``train`` command's script arguments (recipe-only options), in declaration order."""
    return list(dataclasses.fields(_import("skill_sd_trl.app.script_args").SkillSDScriptArguments))


def _type_name(field: dataclasses.Field) -> str:
    """The annotation as written (``float | None``), also after HfArgumentParser resolved it into typing objects."""
    return field.type if isinstance(field.type, str) else _format_type(field.type)


def _format_type(annotation) -> str:
    import types
    import typing

    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_format_type(arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return "None"
    if origin is not None:
        args = ", ".join(_format_type(arg) for arg in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def _inline_code(value: str) -> str:
    """``value`` as inline code, with a fence longer than any run of backticks inside."""
    longest = run = 0
    for ch in value:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    ticks = "`" * (longest + 1)
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{ticks}{pad}{value}{pad}{ticks}"


def _default_markdown(value: Any) -> str:
    if value is dataclasses.MISSING:
        return "required"
    if isinstance(value, str) and "\n" in value:
        return "see below"
    return _inline_code(repr(value))


def fields_reference_markdown(fields: list[dataclasses.Field], owner: str) -> str:
    """A summary table of ``fields`` (linked), then one section per field with type, default, choices and help.

    ``owner`` names the dataclass in error messages. A field without ``metadata["help"]`` is an error: every option
    a user can set must document itself.
    """
    lines = ["| field | type | default | choices |", "|---|---|---|---|"]
    for f in fields:
        choices = f.metadata.get("choices")
        choice_text = ", ".join(_inline_code(repr(c)) for c in choices) if choices else ""
        lines.append(
            f"| [`{f.name}`](#{f.name}) | `{_type_name(f)}` | {_default_markdown(_default(f))} | {choice_text} |"
        )
    lines.append("")
    for f in fields:
        lines += _field_section(f, owner)
    return "\n".join(lines)


def _field_section(f: dataclasses.Field, owner: str) -> list[str]:
    default = _default(f)
    out = [f"### `{f.name}` {{ #{f.name} }}", ""]
    facts = [f"**Type:** `{_type_name(f)}`", f"**Default:** {_default_markdown(default)}"]
    choices = f.metadata.get("choices")
    if choices:
        facts.append("**Choices:** " + ", ".join(_inline_code(repr(c)) for c in choices))
    out += [" · ".join(facts), ""]
    help_text = f.metadata.get("help")
    if not help_text:
        raise ValueError(f"{owner}.{f.name} has no metadata['help']; every option must document itself.")
    out += [html.escape(help_text, quote=False), ""]
    if isinstance(default, str) and "\n" in default:
        out += ["Default value:", "", "```text", default, "```", ""]
    out += [f"Flag: `--{f.name}` · recipe key: `{f.name}`", ""]
    return out


def config_reference_markdown() -> str:
    """Markdown reference of the Skill-SD fields of ``SkillSDConfig``."""
    from trl import GRPOConfig

    fields = new_config_fields()
    intro = (
        f"`SkillSDConfig` subclasses `trl.GRPOConfig`: it accepts all {len(dataclasses.fields(GRPOConfig))} "
        f"`GRPOConfig` fields unchanged and adds the {len(fields)} fields below (generated from "
        "`skill_sd_trl/method/config.py` when this site was built)."
    )
    return intro + "\n\n" + fields_reference_markdown(fields, "SkillSDConfig")


def script_args_reference_markdown() -> str:
    """Markdown reference of the ``train`` command's recipe-only options."""
    fields = script_args_fields()
    intro = (
        f"The {len(fields)} options below exist only in recipes and on the `train` command line "
        "(`SkillSDScriptArguments`, generated from `skill_sd_trl/app/script_args.py` when this site was built)."
    )
    return intro + "\n\n" + fields_reference_markdown(fields, "SkillSDScriptArguments")


# ---------------------------------------------------------------------------------------------------------------
# Recipes
# ---------------------------------------------------------------------------------------------------------------
def _load_yaml(path: Path, root: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path.relative_to(root).as_posix()} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(
            f"{path.relative_to(root).as_posix()} must be a YAML mapping of option: value, got {type(data).__name__}."
        )
    return data


def _is_launcher_config(data: dict) -> bool:
    """``accelerate`` configuration files (``--config_file``) are not recipes."""
    return "distributed_type" in data or "compute_environment" in data


def _comment_lines(path: Path) -> list[str]:
    """The file's opening ``#`` comment block, one entry per line."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped.startswith("#"):
            if lines or stripped:
                break
            continue
        text = stripped.lstrip("#").strip()
        if text:
            lines.append(text)
    return lines


def _cell(text: str) -> str:
    """Plain text safe inside a Markdown table cell."""
    return html.escape(text, quote=False).replace("|", "\\|")


def _settings(data: dict) -> tuple[str, ...]:
    """The recipe's values for ``RECIPE_SETTINGS`` (those it sets), each as inline code ``key: value``."""
    def yaml_value(value: Any) -> str:
        return str(value).lower() if isinstance(value, bool) or value is None else str(value)

    # Code spans also protect any '|' inside them from the table syntax.
    return tuple(_inline_code(f"{key}: {yaml_value(data[key])}") for key in RECIPE_SETTINGS if key in data)


def recipes_markdown(root: Path = ROOT) -> str:
    """Tables of the recipes under ``root/recipes``: one per environment folder, one row per method (paper-scale
    and ``_cpu`` files side by side), then the launcher configurations. A note when there is no recipe."""
    folder = root / "recipes"
    paths = sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml")) if folder.is_dir() else []
    recipes: dict[str, dict[str, dict[str, Path]]] = {}  # env folder -> method -> {"paper"/"cpu": path}
    launchers: list[Path] = []
    data: dict[Path, dict] = {}
    for path in paths:
        data[path] = _load_yaml(path, root)
        if _is_launcher_config(data[path]):
            launchers.append(path)
            continue
        group = path.parent.relative_to(folder).as_posix() if path.parent != folder else "(top level)"
        method, scale = (path.stem[: -len(CPU_SUFFIX)], "cpu") if path.stem.endswith(CPU_SUFFIX) else (path.stem, "paper")
        recipes.setdefault(group, {}).setdefault(method, {})[scale] = path
    if not recipes:
        return (
            "!!! note\n    No recipe files were found under `recipes/` when this page was built; the naming scheme "
            "above still applies."
        )

    def link(path: Path | None) -> str:
        return "" if path is None else _inline_code(path.relative_to(root).as_posix())

    out: list[str] = []
    for group, methods in recipes.items():
        out += [f"### `{group}`", "", "| method | description | full scale | CPU scale | settings |", "|---|---|---|---|---|"]
        for method, files in methods.items():
            first = files.get("paper") or files["cpu"]
            comments = _comment_lines(first)
            settings = {scale: _settings(data[p]) for scale, p in files.items()}
            if len(set(settings.values())) == 1:
                setting_text = "<br>".join(next(iter(settings.values())))
            else:  # the two scales disagree on a method setting: show both rather than hide it
                setting_text = "<br>".join(f"{scale}: {', '.join(items)}" for scale, items in settings.items())
            out.append(
                f"| `{method}` | {_cell(comments[0]) if comments else ''} | {link(files.get('paper'))} | "
                f"{link(files.get('cpu'))} | {setting_text} |"
            )
        out.append("")
    if launchers:
        out += ["### Launcher configurations", "", "Pass one to `accelerate launch --config_file ...`:", "",
                "| file | description |", "|---|---|"]
        for path in launchers:
            out.append(f"| {link(path)} | {'<br>'.join(_cell(line) for line in _comment_lines(path))} |")
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------------------
# Sokoban presets
# ---------------------------------------------------------------------------------------------------------------
def sokoban_presets_markdown() -> str:
    """A table of the Sokoban presets, read from ``PRESETS``."""
    presets = _import("skill_sd_trl.envs.sokoban").PRESETS
    lines = [
        "| preset | room | boxes | max steps | train levels | test levels | optimal solution length | curriculum |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, p in presets.items():
        upper = "∞" if p.max_solution_length is None else p.max_solution_length
        lines.append(
            f"| `{name}` | {p.dim[0]}×{p.dim[1]} | {p.num_boxes} | {p.max_steps} | {p.num_train} | {p.num_test} | "
            f"{p.min_solution_length}–{upper} | {'yes' if p.curriculum else 'no'} |"
        )
    return "\n".join(lines)


def env_registry_markdown() -> str:
    """A table of the installed environments (``env_name``): entry point, splits, limits, task-set option, options."""
    registry = _import("skill_sd_trl.envs.registry")
    lines = [
        "| `env_name` | `load_environment` | train / eval split | `max_turns` | `max_new_tokens_per_turn` | task set | "
        "`env_args` (defaults) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, reference in sorted(registry.registered_environments().items()):
        spec = registry.load_environment(name, {})
        loader = registry.environment_loader(name)
        options = ", ".join(_inline_code(p) for p in registry.describe_parameters(loader).split(", "))
        task_set = _inline_code(spec.task_set_arg) if spec.task_set_arg else "–"
        lines.append(
            f"| `{name}` | `{reference}` | `{spec.train_split}` / `{spec.eval_split}` | {spec.max_turns} | "
            f"{spec.max_new_tokens_per_turn} | {task_set} | {options} |"
        )
    return "\n".join(lines)


def methods_markdown() -> str:
    """A table of the methods a recipe or experiment names (``method: <name>``), read from their one definition."""
    methods = _import("skill_sd_trl.app.methods")
    lines = ["| `method` | paper row | what it is | options |", "|---|---|---|---|"]
    for m in methods.METHODS.values():
        options = "<br>".join(_inline_code(f"{k}: {str(v).lower() if isinstance(v, bool) else v}")
                              for k, v in m.options.items())
        lines.append(f"| `{m.name}` | {_cell(m.label)} | {_cell(m.description)} | {options} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# The MkDocs hook
# ---------------------------------------------------------------------------------------------------------------
GENERATORS: dict[str, Callable[[], str]] = {
    CONFIG_MARKER: config_reference_markdown,
    SCRIPT_ARGS_MARKER: script_args_reference_markdown,
    RECIPES_MARKER: recipes_markdown,
    PRESETS_MARKER: sokoban_presets_markdown,
    REGISTRY_MARKER: env_registry_markdown,
    METHODS_MARKER: methods_markdown,
}


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - MkDocs hook signature
    """Replace the generation markers in the page's Markdown."""
    for marker, generate in GENERATORS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, generate())
    return markdown
