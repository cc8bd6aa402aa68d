"""Reading a recipe: ``--config recipe.yaml`` plus flags into the recipe dataclasses, with one-line errors.

The ``train`` and ``eval`` commands and the experiment runner all parse through here, as ``trl grpo --config`` does
(the YAML gives the defaults, flags override them), with three additions: ``method: <name>`` fills in that method's
options (:mod:`.methods`; the recipe's own keys win), ``--env_args`` on the command line merges into the recipe's
``env_args`` instead of replacing them, and every mistake (a missing file, broken YAML, an unknown key or flag, a bad
value) stops with one line naming it.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

#: Recipe keys of earlier versions: the environment's options moved into ``env_args`` (its load_environment's).
LEGACY_ENV_KEYS = {"env_preset": "preset", "env_seed": "seed", "env_server_url": "server_url",
                   "env_reward_mode": "reward_mode", "env_prompt_style": "prompt_style",
                   "env_lenient_actions": "lenient_actions"}
#: Keys every recipe may hold besides the dataclass fields: environment variables (TRL's convention).
EXTRA_KEYS = ("env",)


class RecipeError(ValueError):
    """A recipe value that cannot work, found while wiring the run (before any model loads where it can); the
    message is one line naming the field and the fix. The command line prints it without a traceback."""


def parse_train_args(argv: list[str]):
    """(script args, SkillSDConfig, ModelConfig, recipe path) from ``--config recipe.yaml`` and flags."""
    types = train_types()
    recipe = config_path(argv)
    config = read_recipe(recipe, types) if recipe is not None else {}
    script, args, model_args = parse(parser(types, "skill-sd-trl train"), argv, config)
    return script, args, model_args, recipe


def train_types() -> tuple:
    from trl import ModelConfig

    from ..method.config import SkillSDConfig
    from .script_args import SkillSDScriptArguments

    return (SkillSDScriptArguments, SkillSDConfig, ModelConfig)


def parser(types, prog: str, **kwargs):
    """A ``TrlParser`` whose errors are one line naming the flag (argparse would print the whole usage first)."""
    from trl import TrlParser

    class OneLineErrors(TrlParser):
        def error(self, message):
            raise SystemExit(f"error: {message}")

    return OneLineErrors(types, prog=prog, **kwargs)


def config_path(argv: list[str]) -> str | None:
    if "--config" not in argv:
        return None
    index = argv.index("--config")
    if index + 1 >= len(argv):
        raise SystemExit("error: --config needs a path to a recipe YAML file.")
    return argv[index + 1]


def known_keys(types) -> set[str]:
    return {f.name for t in types for f in fields(t)} | set(EXTRA_KEYS)


def load_yaml(path: str | os.PathLike, what: str = "recipe") -> Any:
    """A YAML file's content; a missing file or a syntax error is one line naming the file and the line."""
    import yaml

    if not Path(path).is_file():
        raise SystemExit(f"error: {what} file {str(path)!r} not found.")
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SystemExit(f"error: {what} {str(path)!r} is not valid YAML{where}: {problem}.") from None


def read_recipe(path: str, types, ignore_unknown: bool = False) -> dict:
    """A recipe's mapping, checked: every key known to ``types`` (with a suggestion when not), no key of an earlier
    version (with the new spelling), and a known ``method``."""
    data = load_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SystemExit(f"error: recipe {path!r} must be a YAML mapping of option: value.")
    for key in data:
        if key in LEGACY_ENV_KEYS:
            raise SystemExit(f"error: recipe key {key!r} in {path} is now an option of the environment: write "
                             f"`env_args: {{{LEGACY_ENV_KEYS[key]}: {data[key]!r}}}` instead (docs/configuration.md).")
    known = known_keys(types)
    for key in data:
        if key not in known and not ignore_unknown:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise SystemExit(f"error: unknown recipe key {key!r} in {path}.{hint} See docs/configuration.md.")
    return data


def parse(trl_parser, argv: list[str], config: dict | None = None):
    """Parse ``argv`` over the recipe ``config`` into the parser's dataclasses: the method's options filled in,
    ``--env_args`` merged into the recipe's, keys the parser does not know left out (``eval`` reads a train recipe),
    and a bad value (a dataclass ``__post_init__`` check) turned into one line naming the field."""
    from .methods import with_method

    argv = list(argv)
    for arg in argv:
        old = arg.split("=", 1)[0].removeprefix("--")
        if old in LEGACY_ENV_KEYS:
            raise SystemExit(f"error: --{old} is now an option of the environment: write --env_args "
                             f"{LEGACY_ENV_KEYS[old]}=<value> (several: key=value,key=value).")
    if "--config" in argv:
        index = argv.index("--config")
        del argv[index: index + 2]
    config = dict(config or {})
    for key, value in (config.pop("env", None) or {}).items():  # TRL's recipe convention: environment variables
        os.environ[key] = str(value)
    try:
        method_flag = _flag_value(argv, "--method")
        chosen = method_flag or config.get("method")
        config = with_method(config, method_flag)
        if chosen:
            config["method"] = chosen  # recorded in the script arguments
        env_flag = _flag_value(argv, "--env_name")
        if env_flag is not None and env_flag != config.get("env_name", env_flag):
            config.pop("env_args", None)  # the recipe's options belong to the recipe's environment
        _merge_env_args(argv, config)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    dests = {action.dest for action in trl_parser._actions}
    trl_parser.set_defaults_with_config(**{k: v for k, v in config.items() if k in dests})
    try:
        return trl_parser.parse_args_into_dataclasses(args=argv)
    except ValueError as e:
        unused = re.search(r"not used by the HfArgumentParser: \[(.*)\]", str(e))
        if unused is None:
            raise SystemExit(f"error: {' '.join(str(e).split())}") from None
        flag = next((a.strip(" '\"") for a in unused.group(1).split(",") if a.strip(" '\"").startswith("-")), None)
        known = [o for action in trl_parser._actions for o in action.option_strings if o.startswith("--")]
        close = difflib.get_close_matches(flag or "", known, n=1)
        hint = f" Did you mean {close[0]}?" if close else " See --help."
        raise SystemExit(f"error: unknown flag {flag or unused.group(1)}.{hint}") from None


def _flag_value(argv: list[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _merge_env_args(argv: list[str], config: dict) -> None:
    """``--env_args`` on the command line adds to (or changes) the recipe's ``env_args`` instead of replacing them."""
    from ..envs.arguments import parse_env_args

    given = _flag_value(argv, "--env_args")
    if given is None:
        return
    merged = {**parse_env_args(config.get("env_args")), **parse_env_args(given)}
    for i, arg in enumerate(argv):
        if arg == "--env_args":
            argv[i + 1] = json.dumps(merged)
        elif arg.startswith("--env_args="):
            argv[i] = "--env_args=" + json.dumps(merged)
