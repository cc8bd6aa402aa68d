"""The package's layers: imports only run down (checked on the source, function-level imports included)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "skill_sd_trl"

#: What a layer may not import: everything above it.
FORBIDDEN = {
    "skills": {"envs", "rollout", "teacher", "trainer", "train", "evaluation", "experiment", "cli", "warmstart",
               "models", "report"},
    "envs": {"rollout", "teacher", "trainer", "train", "evaluation", "experiment", "cli", "warmstart", "models",
             "report"},
    "models.py": {"warmstart", "trainer", "train", "evaluation", "experiment", "cli", "envs", "skills"},
}


def imported_modules(path: Path) -> set[str]:
    """Top-level ``skill_sd_trl`` submodules imported anywhere in ``path`` (relative imports resolved)."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]  # ('skill_sd_trl', 'envs', 'sokoban')
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                parts = list(base) + (node.module.split(".") if node.module else [])
                if not node.module:  # `from .. import x`: x is the module
                    found.update(parts[1:2] or [a.name for a in node.names])
                    continue
            else:
                parts = (node.module or "").split(".")
            if parts[0] == "skill_sd_trl" and len(parts) > 1:
                found.add(parts[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "skill_sd_trl" and len(parts) > 1:
                    found.add(parts[1])
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_import_runs_back_up(layer):
    offenders = {}
    paths = [PACKAGE / layer] if layer.endswith(".py") else sorted((PACKAGE / layer).rglob("*.py"))
    for path in paths:
        bad = (imported_modules(path) - {layer.removesuffix(".py")}) & FORBIDDEN[layer]
        if bad:
            offenders[str(path.relative_to(PACKAGE))] = sorted(bad)
    assert not offenders, f"{layer}/ imports a higher layer: {offenders}"


def test_the_package_import_graph_has_no_cycle():
    """Modules (and packages) of skill_sd_trl import one another in one direction only: a lower layer never imports
    a higher one, even inside a function. The package ``__init__`` (which registers the calibrated bases) and
    ``__main__`` are entry points, not layers."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        top = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if top in ("__init__", "__main__"):
            continue
        graph.setdefault(top, set()).update(imported_modules(path) - {top, "__init__"})
    order, state = [], {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", f"import cycle: {' -> '.join(trail + [node])}"
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            visit(target, trail + [node])
        state[node] = "done"
        order.append(node)

    for node in sorted(graph):
        visit(node, [])
    assert order.index("envs") < order.index("rollout") < order.index("trainer") < order.index("train")
    assert order.index("skills") < order.index("envs") and order.index("recipe") < order.index("cli")


def test_the_checker_sees_relative_and_function_level_imports(tmp_path):
    probe = PACKAGE / "skills" / "_layer_probe.py"
    probe.write_text("def f():\n    from ..envs.registry import get_env_spec\n    from .. import rollout\n")
    try:
        assert imported_modules(probe) == {"envs", "rollout"}
    finally:
        probe.unlink()


def test_skills_name_no_environment():
    """Environment knowledge (prompts, event names) lives in the environment packages (EnvSpec), not in skills/."""
    for path in sorted((PACKAGE / "skills").rglob("*.py")):
        text = path.read_text(encoding="utf-8").lower()
        for word in ("box_in_dead_corner", "box_on_target", "wall_bump", "apis.supervisor", "sokoban level"):
            assert word not in text, f"{path.name} names an environment's detail: {word!r}"


def test_the_app_layer_hands_the_environment_vocabulary_to_the_summarizer():
    from skill_sd_trl.envs.sokoban.summary import EVENTS, SUMMARY_PROMPT
    from skill_sd_trl.script_args import SkillSDScriptArguments
    from skill_sd_trl.train import _make_summarizer

    experience = _make_summarizer(SkillSDScriptArguments(env_name="sokoban"), "unused")
    assert experience.events == {"sokoban": EVENTS}
    llm = _make_summarizer(SkillSDScriptArguments(env_name="sokoban", summarizer="openai",
                                                  summarizer_base_url="http://127.0.0.1:9/v1", summarizer_model="m",
                                                  summarizer_api_key_env="PATH"), "unused")
    assert llm.prompts.for_env("sokoban") is SUMMARY_PROMPT


def test_the_trainer_keeps_only_the_algorithm():
    """SkillSDTrainer holds teacher scoring, the loss and the card hooks; everything else lives in its own module."""
    lines = (PACKAGE / "trainer.py").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 400, f"trainer.py has {len(lines)} lines; move a responsibility out (batch_plan.py, ...)"
