"""The package's architecture, as a few rules between its layers (checked on the source, function-level imports
included).

The layers, bottom to top; a module may import its own layer and the ones below, never one above:

    atomic, trl_private  tools every layer may use (atomic files; the one module that touches TRL's private surface)
    skills               skill schema, summarizers, bank, pipeline; the Trajectory record. Knows no environment.
    envs                 environments (plugins) and their contract (TextEnv, EnvSpec)
    rollout, rewards     multi-turn episodes against environments; reward functions over their records
    method               SkillSDConfig, SkillSDTrainer and its parts
    models               model supply: embedded model, calibrated bases (warm starts), tiny test models
    app                  recipes, train / eval / report, the method definitions
    experiment           methods x seeds x task sets, at equal steps
    cli                  the command line (entry point, like __init__ and __main__)
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "skill_sd_trl"

LAYERS = (
    ("atomic", "trl_private"),
    ("skills",),
    ("envs",),
    ("rollout", "rewards"),
    ("method",),
    ("models",),
    ("app",),
    ("experiment",),
    ("cli",),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
ENTRY_POINTS = ("__init__", "__main__")
#: Folders that are not a layer's own modules, allowed to be long: the offline app world (a whole world of apps).
LONG_MODULES_ALLOWED = ("envs/appworld/offline",)
MAX_MODULE_LINES = 600
MAX_TOP_LEVEL_MODULES = 10


def imported_modules(path: Path) -> set[str]:
    """Top-level ``skill_sd_trl`` submodules imported anywhere in ``path`` (relative imports resolved)."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]  # ('skill_sd_trl', 'envs', 'sokoban')
    if path.name == "__init__.py":
        package = path.relative_to(PACKAGE.parent).parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                parts = list(base) + (node.module.split(".") if node.module else [])
                if not node.module and len(parts) == 1:  # `from .. import x` at the top: x is the module
                    found.update(a.name for a in node.names)
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


def layer_of(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def test_every_module_belongs_to_a_layer():
    tops = {layer_of(p) for p in PACKAGE.rglob("*.py")} - set(ENTRY_POINTS)
    assert tops <= set(RANK), f"modules or folders outside the layer table: {sorted(tops - set(RANK))}"


@pytest.mark.parametrize("layer", sorted(RANK))
def test_imports_only_run_down(layer):
    offenders = {}
    paths = [PACKAGE / f"{layer}.py"] if (PACKAGE / f"{layer}.py").exists() else sorted((PACKAGE / layer).rglob("*.py"))
    for path in paths:
        up = {m for m in imported_modules(path) if RANK.get(m, -1) > RANK[layer]}
        if up:
            offenders[str(path.relative_to(PACKAGE))] = sorted(up)
    assert not offenders, f"{layer} imports a higher layer: {offenders}"


def test_the_checker_sees_relative_and_function_level_imports():
    probe = PACKAGE / "skills" / "_layer_probe.py"
    probe.write_text("def f():\n    from ..envs.registry import get_env_spec\n    from .. import rollout\n")
    try:
        assert imported_modules(probe) == {"envs", "rollout"}
    finally:
        probe.unlink()


def test_the_tree_stays_readable():
    """At most 10 modules directly in the package; no module over 600 lines outside the offline app world."""
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, f"{len(top)} modules directly in skill_sd_trl/: {top}"
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if not str(p.relative_to(PACKAGE)).startswith(LONG_MODULES_ALLOWED)
            and (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_the_readme_layout_table_names_every_layer_folder():
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout"):]
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    missing = [f for f in folders if f"`skill_sd_trl/{f}/`" not in layout]
    assert not missing, f"README's layout table does not name: {missing}"


def test_skills_name_no_environment():
    """Environment knowledge (prompts, event names) lives in the environment packages (EnvSpec), not in skills/."""
    for path in sorted((PACKAGE / "skills").rglob("*.py")):
        text = path.read_text(encoding="utf-8").lower()
        for word in ("box_in_dead_corner", "box_on_target", "wall_bump", "apis.supervisor", "sokoban level"):
            assert word not in text, f"{path.name} names an environment's detail: {word!r}"


def test_the_app_layer_hands_the_environment_vocabulary_to_the_summarizer():
    from skill_sd_trl.envs.sokoban.summary import EVENTS, SUMMARY_PROMPT
    from skill_sd_trl.app.script_args import SkillSDScriptArguments
    from skill_sd_trl.app.train import _make_summarizer

    experience = _make_summarizer(SkillSDScriptArguments(env_name="sokoban"), "unused")
    assert experience.events == {"sokoban": EVENTS}
    llm = _make_summarizer(SkillSDScriptArguments(env_name="sokoban", summarizer="openai",
                                                  summarizer_base_url="http://127.0.0.1:9/v1", summarizer_model="m",
                                                  summarizer_api_key_env="PATH"), "unused")
    assert llm.prompts.for_env("sokoban") is SUMMARY_PROMPT


def test_the_trainer_keeps_only_the_algorithm():
    """SkillSDTrainer holds teacher scoring, the loss and the card hooks; everything else lives in its own module."""
    lines = (PACKAGE / "method" / "trainer.py").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 400, f"trainer.py has {len(lines)} lines; move a responsibility out (batch_plan.py, ...)"
