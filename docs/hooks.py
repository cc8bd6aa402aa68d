"""MkDocs hook: pages generated from the code at build time, so the docs cannot drift from it.

Markers replaced in the Markdown of any page (``hooks: [docs/hooks.py]`` in ``mkdocs.yml``):

- ``<!-- CONFIG_REFERENCE -->``: one section per field that :class:`~skill_sd_trl.SkillSDConfig` adds to
  ``trl.GRPOConfig`` (type, default, choices, help), read from the dataclass itself.
- ``<!-- RECIPES_TABLE -->``: the recipe files found under ``recipes/`` at build time, with their leading comment and
  the Skill-SD settings they choose.
- ``<!-- SOKOBAN_PRESETS -->``: the Sokoban task-set presets (``skill_sd_trl.envs.sokoban.PRESETS``).

The functions are importable without MkDocs (``tests/test_docs.py`` calls them directly).
"""

from __future__ import annotations

import dataclasses
import html
import importlib
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIG_MARKER = "<!-- CONFIG_REFERENCE -->"
RECIPES_MARKER = "<!-- RECIPES_TABLE -->"
PRESETS_MARKER = "<!-- SOKOBAN_PRESETS -->"

# Fields a reader of the recipes table wants to compare at a glance (the baselines differ exactly in these).
RECIPE_COLUMNS = (
    "sdl_coef",
    "grpo_coef",
    "teacher_context",
    "teacher_sync_mode",
    "rollout_policy",
    "skills_in_student_prompt",
)


def _import(module: str):
    """Import a ``skill_sd_trl`` module from the installed package, or from this checkout when not installed."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name is None or not err.name.startswith("skill_sd_trl"):
            raise  # a real missing dependency (trl, torch): say so instead of hiding it
        sys.path.insert(0, str(ROOT))
        return importlib.import_module(module)


def new_config_fields() -> list[dataclasses.Field]:
    """The dataclass fields of ``SkillSDConfig`` that ``GRPOConfig`` does not have, in declaration order."""
    from trl import GRPOConfig

    config = _import("skill_sd_trl.config")
    parent = {f.name for f in dataclasses.fields(GRPOConfig)}
    return [f for f in dataclasses.fields(config.SkillSDConfig) if f.name not in parent]


def _type_name(field: dataclasses.Field) -> str:
    # ``from __future__ import annotations`` keeps annotations as strings, already in the source's spelling.
    return field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def _inline_code(value: str) -> str:
    """``value`` as inline code, with a fence long enough for any backticks inside."""
    longest = 0
    run = 0
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


def config_reference_markdown() -> str:
    """Markdown reference of the Skill-SD fields: a summary table, then one section per field."""
    from trl import GRPOConfig

    fields = new_config_fields()
    lines = [
        f"`SkillSDConfig` subclasses `trl.GRPOConfig`: it accepts all {len(dataclasses.fields(GRPOConfig))} "
        f"`GRPOConfig` fields unchanged and adds the {len(fields)} fields below. This reference is generated from "
        "the dataclass (`skill_sd_trl/config.py`) every time the site is built.",
        "",
        "| field | type | default | choices |",
        "|---|---|---|---|",
    ]
    for f in fields:
        choices = f.metadata.get("choices")
        choice_text = ", ".join(_inline_code(repr(c)) for c in choices) if choices else ""
        lines.append(
            f"| [`{f.name}`](#{f.name}) | `{_type_name(f)}` | {_default_markdown(_default(f))} | {choice_text} |"
        )
    lines.append("")
    for f in fields:
        lines += _field_section(f)
    return "\n".join(lines)


def _field_section(f: dataclasses.Field) -> list[str]:
    default = _default(f)
    out = [f"### `{f.name}` {{ #{f.name} }}", ""]
    facts = [f"**Type:** `{_type_name(f)}`", f"**Default:** {_default_markdown(default)}"]
    choices = f.metadata.get("choices")
    if choices:
        facts.append("**Choices:** " + ", ".join(_inline_code(repr(c)) for c in choices))
    out += [" · ".join(facts), ""]
    help_text = f.metadata.get("help")
    if not help_text:
        raise ValueError(f"SkillSDConfig.{f.name} has no metadata['help']; every Skill-SD field must document itself.")
    out += [html.escape(help_text, quote=False), ""]
    if isinstance(default, str) and "\n" in default:
        out += ["Default value:", "", "```text", default, "```", ""]
    out += [f"CLI / YAML: `--{f.name}` / `{f.name}: ...`", ""]
    return out


def recipes_markdown(root: Path = ROOT) -> str:
    """A table of ``recipes/**/*.yaml`` (path, description, Skill-SD settings); a note when there are none."""
    folder = root / "recipes"
    paths = sorted(folder.rglob("*.yaml")) + sorted(folder.rglob("*.yml")) if folder.is_dir() else []
    if not paths:
        return (
            "!!! note\n    No recipe files were found under `recipes/` when this page was built; the naming scheme "
            "below still applies."
        )
    import yaml

    lines = [
        "| recipe | description | " + " | ".join(f"`{c}`" for c in RECIPE_COLUMNS) + " |",
        "|---|---|" + "---|" * len(RECIPE_COLUMNS),
    ]
    for path in paths:
        text = path.read_text(encoding="utf-8")
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"{path.relative_to(root)} is not valid YAML: {err}") from err
        if not isinstance(data, dict):
            raise ValueError(f"{path.relative_to(root)} must be a YAML mapping of option: value, got {type(data).__name__}.")
        flat = _flatten(data)
        cells = [_table_cell(flat[c]) if c in flat else "" for c in RECIPE_COLUMNS]
        rel = path.relative_to(root).as_posix()
        lines.append(f"| `{rel}` | {_table_text(_leading_comment(text))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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


def _flatten(data: dict, out: dict | None = None) -> dict:
    """Option values from a recipe, looking inside nested sections too (``training: {sdl_coef: ...}``)."""
    out = {} if out is None else out
    for key, value in data.items():
        if isinstance(value, dict):
            _flatten(value, out)
        else:
            out.setdefault(str(key), value)
    return out


def _leading_comment(text: str) -> str:
    """The recipe's opening ``#`` comment block, joined into one line."""
    parts = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("#"):
            if parts or stripped:
                break
            continue
        parts.append(stripped.lstrip("#").strip())
    return " ".join(p for p in parts if p)


def _table_text(text: str) -> str:
    return html.escape(text, quote=False).replace("|", "\\|")


def _table_cell(value: Any) -> str:
    return _inline_code(repr(value) if isinstance(value, str) else str(value)).replace("|", "\\|")


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - MkDocs hook signature
    """Replace the generation markers in the page's Markdown."""
    if CONFIG_MARKER in markdown:
        markdown = markdown.replace(CONFIG_MARKER, config_reference_markdown())
    if RECIPES_MARKER in markdown:
        markdown = markdown.replace(RECIPES_MARKER, recipes_markdown())
    if PRESETS_MARKER in markdown:
        markdown = markdown.replace(PRESETS_MARKER, sokoban_presets_markdown())
    return markdown
