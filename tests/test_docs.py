"""The documentation site: generated configuration reference, metrics glossary, recipes table, strict build."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PACKAGE = ROOT / "skill_sd_trl"
METRIC_PREFIXES = ("self_distillation/", "teacher/", "skills/", "env/")


def _hooks():
    spec = importlib.util.spec_from_file_location("skill_sd_docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------------------------
# (1) configuration reference
# ---------------------------------------------------------------------------------------------------------------
def _sections(markdown: str) -> dict[str, str]:
    """``### `name` {...}`` sections of the generated reference, by field name."""
    parts = re.split(r"^### `([A-Za-z_0-9]+)`.*$", markdown, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def test_config_reference_documents_every_new_field_with_type_default_choices_help():
    from trl import GRPOConfig

    from skill_sd_trl.method.config import SkillSDConfig

    parent = {f.name for f in dataclasses.fields(GRPOConfig)}
    new = [f for f in dataclasses.fields(SkillSDConfig) if f.name not in parent]
    assert len(new) >= 15  # the extraction itself works (sdl_coef, teacher_*, ...)

    hooks = _hooks()
    markdown = hooks.config_reference_markdown()
    sections = _sections(markdown)
    assert [f.name for f in new] == list(sections), "one section per new field, in declaration order"
    for f in new:
        body = sections[f.name]
        assert f"**Type:** `{hooks._type_name(f)}`" in body, f.name
        assert hooks._type_name(f) in {"float", "int", "str", "bool", "float | None", "str | None", "int | None"}
        if isinstance(f.default, str) and "\n" in f.default:
            assert f.default in body, f"{f.name}: multi-line default shown verbatim"
        else:
            assert f"**Default:** `{f.default!r}`" in body, f.name
        for choice in f.metadata.get("choices", []):
            assert f"`{choice!r}`" in body, f"{f.name}: choice {choice!r} missing"
        first_words = " ".join(f.metadata["help"].split()[:4])
        assert first_words in body, f"{f.name}: help text missing"
        assert f"[`{f.name}`](#{f.name})" in markdown, f"{f.name}: missing from the summary table"
    # Only the new fields: the parent's options are referenced, not repeated.
    assert "learning_rate" not in sections and "num_generations" not in sections
    assert f"all {len(parent)} `GRPOConfig` fields" in markdown


def test_recipe_options_reference_documents_every_script_argument_and_ids_are_unique():
    from trl import GRPOConfig

    from skill_sd_trl.method.config import SkillSDConfig
    from skill_sd_trl.app.script_args import SkillSDScriptArguments

    hooks = _hooks()
    script_fields = dataclasses.fields(SkillSDScriptArguments)
    sections = _sections(hooks.script_args_reference_markdown())
    assert [f.name for f in script_fields] == list(sections)
    for f in script_fields:
        assert f"**Default:** `{f.default!r}`" in sections[f.name], f.name
        assert " ".join(f.metadata["help"].split()[:3]) in sections[f.name], f.name
    # Both references share docs/configuration.md: a field name in both would give two sections the same id.
    config_new = {f.name for f in dataclasses.fields(SkillSDConfig)} - {f.name for f in dataclasses.fields(GRPOConfig)}
    assert not config_new & set(sections)


def test_config_reference_refuses_a_field_without_help(monkeypatch):
    hooks = _hooks()
    bare = dataclasses.field(default=1)
    bare.name, bare.type = "undocumented_knob", "int"
    monkeypatch.setattr(hooks, "new_config_fields", lambda: [bare])
    with pytest.raises(ValueError, match="SkillSDConfig.undocumented_knob has no metadata\\['help'\\]"):
        hooks.config_reference_markdown()


# ---------------------------------------------------------------------------------------------------------------
# (2) metrics glossary
# ---------------------------------------------------------------------------------------------------------------
def _constant_strings(node: ast.AST) -> tuple[str, ...] | None:
    """The strings of a literal tuple/list of string constants, else None."""
    if isinstance(node, (ast.Tuple, ast.List)) and node.elts and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts
    ):
        return tuple(e.value for e in node.elts)
    return None


def _loop_bindings(tree: ast.AST) -> dict[int, dict[str, tuple[str, ...]]]:
    """For every node inside a ``for`` loop over literal strings, the loop variables bound to those strings.

    Handles ``for k in ("a", "b")``, ``for k, v in zip(("a", "b"), ...)`` and
    ``for i, k in enumerate(("a", "b"))``.
    """
    bindings: dict[int, dict[str, tuple[str, ...]]] = {}

    def visit(node, bound):
        if isinstance(node, ast.For):
            bound = dict(bound)
            values = _constant_strings(node.iter)
            if values is not None and isinstance(node.target, ast.Name):
                bound[node.target.id] = values
            elif (
                isinstance(node.iter, ast.Call)
                and getattr(node.iter.func, "id", None) == "enumerate"
                and isinstance(node.target, ast.Tuple)
                and len(node.target.elts) == 2
            ):
                values = _constant_strings(node.iter.args[0])
                if values is not None and isinstance(node.target.elts[1], ast.Name):
                    bound[node.target.elts[1].id] = values
            elif (
                isinstance(node.iter, ast.Call)
                and getattr(node.iter.func, "id", None) == "zip"
                and isinstance(node.target, ast.Tuple)
            ):
                for arg, target in zip(node.iter.args, node.target.elts):
                    values = _constant_strings(arg)
                    if values is not None and isinstance(target, ast.Name):
                        bound[target.id] = values
        bindings[id(node)] = bound
        for child in ast.iter_child_nodes(node):
            visit(child, bound)

    visit(tree, {})
    return bindings


def _fstring_keys(node: ast.JoinedStr, bound: dict[str, tuple[str, ...]]) -> list[str]:
    """Expand an f-string: loop variables over literal strings give each value, anything else ``<name>``."""
    keys = [""]
    for part in node.values:
        if isinstance(part, ast.Constant):
            keys = [k + str(part.value) for k in keys]
            continue
        expr = part.value
        name = expr.id if isinstance(expr, ast.Name) else ast.unparse(expr)
        options = bound.get(name, (f"<{name}>",))
        keys = [k + o for k in keys for o in options]
    return keys


def metric_keys_in_source() -> set[str]:
    """Every string literal / f-string of the package that starts with a metric prefix, f-strings normalized."""
    keys: set[str] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bindings = _loop_bindings(tree)
        fstring_parts = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):
                found = _fstring_keys(node, bindings.get(id(node), {}))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in fstring_parts:
                found = [node.value]
            else:
                continue
            # Bare prefixes ("env/", used in startswith checks) and prose are not metric keys.
            keys.update(k for k in found if k.startswith(METRIC_PREFIXES) and not k.endswith("/") and not re.search(r"\s", k))
    return keys


def _documented_keys(text: str) -> set[str]:
    return {m for m in re.findall(r"`([^`\s]+)`", text) if m.startswith(METRIC_PREFIXES)}


def test_metric_extraction_finds_the_known_keys():
    keys = metric_keys_in_source()
    # If the extractor broke, the glossary test below would pass vacuously.
    for expected in ("self_distillation/sdl", "teacher/sync_count", "skills/coverage", "skills/bank_size",
                     "env/<name>/acc", "env/<name>/invalid_actions", "env/<name>/stop/<reason>"):
        assert expected in keys, expected
    assert len(keys) >= 25


def _segment_regex(key: str, wildcard: str) -> re.Pattern:
    """``key`` as a regex where each ``wildcard`` match stands for one path segment."""
    return re.compile("^" + "[^/]+".join(re.escape(part) for part in re.split(wildcard, key)) + "$")


def test_every_logged_metric_is_documented():
    from skill_sd_trl.rollout.multi_turn import STOP_REASONS

    documented = _documented_keys((DOCS / "metrics.md").read_text(encoding="utf-8"))
    keys = metric_keys_in_source()
    # Glob patterns (``env/*/acc`` in the plotting code) refer to metrics: each must match a documented key.
    globs = {k for k in keys if "*" in k}
    unmatched = sorted(g for g in globs if not any(_segment_regex(g, r"\*").match(d) for d in documented))
    assert not unmatched, f"metric patterns used in the code match nothing in docs/metrics.md: {unmatched}"
    missing = sorted(keys - globs - documented)
    assert not missing, f"metrics logged by the code but not documented in docs/metrics.md: {missing}"
    missing_reasons = [r for r in STOP_REASONS if f"env/<name>/stop/{r}" not in documented]
    assert not missing_reasons, f"stop reasons without a row in docs/metrics.md: {missing_reasons}"


def test_every_documented_metric_exists_in_the_code():
    """The reverse direction: a documented key must match a key the code logs (``<...>`` matches one segment)."""
    patterns = [_segment_regex(k, r"<[^>/]+>|\*") for k in metric_keys_in_source()]
    documented = _documented_keys((DOCS / "metrics.md").read_text(encoding="utf-8"))
    stale = sorted(k for k in documented if not any(p.match(k) for p in patterns))
    assert not stale, f"docs/metrics.md documents keys the code no longer logs: {stale}"


# ---------------------------------------------------------------------------------------------------------------
# recipes table
# ---------------------------------------------------------------------------------------------------------------
def test_recipes_table_pairs_scales_shows_settings_and_separates_launchers(tmp_path):
    hooks = _hooks()
    assert "No recipe files" in hooks.recipes_markdown(tmp_path)
    sokoban = tmp_path / "recipes" / "sokoban"
    sokoban.mkdir(parents=True)
    (sokoban / "vanilla_grpo.yaml").write_text(
        "# Vanilla GRPO (lambda = 0)\n# Launch: ...\n\nsdl_coef: 0.0\nlearning_rate: 1.0e-6\nskill_source: none\n"
    )
    (sokoban / "vanilla_grpo_cpu.yaml").write_text("# Vanilla GRPO | CPU\nsdl_coef: 0.0\nskill_source: none\n")
    (sokoban / "skill_sd_cpu.yaml").write_text("# Skill-SD\nsdl_coef: 0.001\nskills_in_student_prompt: false\n")
    (sokoban / "opd.yaml").write_text("# OPD\nteacher_context: ground_truth\ngrpo_coef: 0\n")
    (sokoban / "opd_cpu.yaml").write_text("# OPD small\nteacher_context: ground_truth\ngrpo_coef: 1\n")
    (tmp_path / "recipes" / "accelerate").mkdir()
    (tmp_path / "recipes" / "accelerate" / "zero2.yaml").write_text(
        "# accelerate launch --config_file zero2.yaml\n# ZeRO-2\ndistributed_type: DEEPSPEED\n"
    )

    rows = {line.split(" | ")[0]: line for line in hooks.recipes_markdown(tmp_path).splitlines() if line.startswith("| `")}
    grpo = rows["| `vanilla_grpo`"]
    # One row per method: both scales side by side, the full-scale file's first comment line as description.
    assert grpo.startswith("| `vanilla_grpo` | Vanilla GRPO (lambda = 0) | `recipes/sokoban/vanilla_grpo.yaml` | "
                           "`recipes/sokoban/vanilla_grpo_cpu.yaml` |")
    assert grpo.endswith("| `sdl_coef: 0.0`<br>`skill_source: none` |")  # learning_rate is not a method setting
    assert rows["| `skill_sd`"].endswith(  # a method with only a CPU file
        "| Skill-SD |  | `recipes/sokoban/skill_sd_cpu.yaml` | `sdl_coef: 0.001`<br>`skills_in_student_prompt: false` |"
    )
    # Scales that disagree on a method setting are both shown, never silently merged.
    assert rows["| `opd`"].endswith(
        "| paper: `grpo_coef: 0`, `teacher_context: ground_truth`<br>cpu: `grpo_coef: 1`, `teacher_context: ground_truth` |"
    )
    # accelerate launcher files are listed apart, not as methods.
    launcher = rows["| `recipes/accelerate/zero2.yaml`"]
    assert launcher.endswith("| accelerate launch --config_file zero2.yaml<br>ZeRO-2 |")
    assert "| `zero2`" not in rows

    (sokoban / "broken.yaml").write_text("sdl_coef: [1, 2\n")
    with pytest.raises(ValueError, match=r"recipes/sokoban/broken.yaml is not valid YAML"):
        hooks.recipes_markdown(tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# (3) the strict build
# ---------------------------------------------------------------------------------------------------------------
def _nav_pages() -> list[str]:
    import yaml

    class _Loader(yaml.SafeLoader):  # mkdocs.yml may hold !!python tags; only nav matters here
        pass

    _Loader.add_multi_constructor("", lambda loader, suffix, node: None)
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_Loader)
    return [page for entry in config["nav"] for page in entry.values()]


def test_mkdocs_build_strict(tmp_path):
    if shutil.which("mkdocs") is None and importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed: pip install -e '.[docs]' (mkdocs, mkdocs-material)")
    if importlib.util.find_spec("material") is None:
        pytest.skip("mkdocs-material is not installed: pip install -e '.[docs]'")
    missing = [p for p in _nav_pages() if not (DOCS / p).is_file()]
    assert not missing, f"pages listed in mkdocs.yml nav do not exist under docs/: {missing}"

    site = tmp_path / "site"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"

    # The hook really ran: generated content is in the pages, no marker is left.
    configuration = (site / "configuration" / "index.html").read_text(encoding="utf-8")
    for name in ("sdl_coef", "teacher_sync_mode", "rollout_policy", "teacher_adapter_name"):
        assert f'id="{name}"' in configuration, name
    for page in site.rglob("*.html"):
        assert "CONFIG_REFERENCE" not in page.read_text(encoding="utf-8"), page
    environments = (site / "environments" / "index.html").read_text(encoding="utf-8")
    assert "<code>paper</code>" in environments and "SOKOBAN_PRESETS" not in environments
    assert not (site / "hooks.py").exists(), "the hook source must not be published"
