"""Reading a recipe: ``--config recipe.yaml`` plus flags into the recipe dataclasses, with one-line errors.

The ``train`` and ``eval`` commands and the experiment runner all parse through here (``TrlParser``, as ``trl grpo
--config`` does): a key no dataclass knows, a typo'd flag or a bad value stops with one line naming it.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import fields
from pathlib import Path


def parse_train_args(argv: list[str]):
    """(script args, SkillSDConfig, ModelConfig) from ``--config recipe.yaml`` and flags, with recipe-key checks."""
    types = train_types()
    recipe = config_path(argv)
    if recipe is not None:
        check_recipe(recipe, types)
    script, args, model_args = parse(parser(types, "skill-sd-trl train"), argv)
    return script, args, model_args, recipe


def parser(types, prog: str, **kwargs):
    """A ``TrlParser`` whose errors are one line naming the flag (argparse would print the whole usage first)."""
    from trl import TrlParser

    class OneLineErrors(TrlParser):
        def error(self, message):
            raise SystemExit(f"error: {message}")

    return OneLineErrors(types, prog=prog, **kwargs)


def parse(trl_parser, argv: list[str], **kwargs):
    """Parse, turning a bad value (a dataclass ``__post_init__`` check) into one line that names the field."""
    try:
        return trl_parser.parse_args_and_config(args=argv, **kwargs)
    except ValueError as e:
        unused = re.search(r"not used by the HfArgumentParser: \[(.*)\]", str(e))
        if unused is None:
            raise SystemExit(f"error: {e}") from None
        flag = next((a.strip(" '\"") for a in unused.group(1).split(",") if a.strip(" '\"").startswith("-")), None)
        known = [o for action in trl_parser._actions for o in action.option_strings if o.startswith("--")]
        close = difflib.get_close_matches(flag or "", known, n=1)
        hint = f" Did you mean {close[0]}?" if close else " See --help."
        raise SystemExit(f"error: unknown flag {flag or unused.group(1)}.{hint}") from None


def train_types() -> tuple:
    from trl import ModelConfig

    from ..method.config import SkillSDConfig
    from .script_args import SkillSDScriptArguments

    return (SkillSDScriptArguments, SkillSDConfig, ModelConfig)


def config_path(argv: list[str]) -> str | None:
    if "--config" not in argv:
        return None
    index = argv.index("--config")
    if index + 1 >= len(argv):
        raise SystemExit("error: --config needs a path to a recipe YAML file.")
    return argv[index + 1]


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
