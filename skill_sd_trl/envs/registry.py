"""Environments as plugins: a name (or ``module:function``) and its ``env_args`` in, an :class:`EnvSpec` out.

An environment package exposes ``load_environment(**env_args) -> EnvSpec``, verifiers' convention: its signature is
the list of its options. Installed packages register it under the entry-point group ``skill_sd_trl.environments``
(setup.cfg below; in pyproject.toml the table ``[project.entry-points."skill_sd_trl.environments"]``)::

    [options.entry_points]
    skill_sd_trl.environments =
        my_env = my_package.my_env:load_environment

and recipes then say ``env_name: my_env``; an unregistered module works too, as ``env_name: my_package.my_env:load``.
Sokoban and the app world register themselves the same way (this package's setup.cfg). ``env_args`` are checked
against the function's signature before it runs, so a typo'd option is one line that lists the real ones.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

from .base import EnvSpec

ENTRY_POINT_GROUP = "skill_sd_trl.environments"


class EnvError(ValueError):
    """An environment that cannot be found or loaded with the given ``env_args``; the message is one line."""


def registered_environments() -> dict[str, str]:
    """Installed environments: name -> ``module:function`` of their ``load_environment``."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def environment_loader(name: str) -> Callable[..., EnvSpec]:
    """The ``load_environment`` function of a registered environment or of a ``module:function`` reference."""
    if not isinstance(name, str) or not name:
        raise EnvError(f"env_name={name!r}: give a registered environment name or module:function.")
    if ":" in name:
        return _import_loader(name, name)
    registered = registered_environments()
    if name not in registered:
        close = difflib.get_close_matches(name, list(registered), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise EnvError(f"env_name={name!r} is not an installed environment.{hint} Installed (entry-point group "
                       f"{ENTRY_POINT_GROUP}): {', '.join(sorted(registered)) or 'none'}; or give module:function.")
    return _import_loader(name, registered[name])


def _import_loader(name: str, reference: str) -> Callable[..., EnvSpec]:
    module_name, _, attribute = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise EnvError(f"env_name={name!r}: cannot import {module_name!r} ({e}).") from None
    loader = getattr(module, attribute or "load_environment", None)
    if not callable(loader):
        raise EnvError(f"env_name={name!r}: {module_name!r} has no function {attribute or 'load_environment'!r}.")
    return loader


def parameters(loader: Callable[..., EnvSpec]) -> dict[str, inspect.Parameter]:
    """The options an environment takes (its ``load_environment`` keyword parameters)."""
    return {p.name: p for p in inspect.signature(loader).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def describe_parameters(loader: Callable[..., EnvSpec]) -> str:
    """``preset='small', seed=0, ...``: an environment's options with their defaults, for error messages and help."""
    return ", ".join(name if p.default is p.empty else f"{name}={p.default!r}"
                     for name, p in parameters(loader).items()) or "none"


def check_env_args(name: str, loader: Callable[..., EnvSpec], env_args: Mapping[str, Any]) -> None:
    """Every key of ``env_args`` is a parameter of ``loader``, every required parameter is given, and a value whose
    parameter has a plain-typed default has that type; otherwise one line naming the option and listing the real
    ones."""
    known = parameters(loader)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(loader).parameters.values())
    options = f"{name}'s options: {describe_parameters(loader)}"
    for key, value in env_args.items():
        if key not in known:
            if takes_any:
                continue
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise EnvError(f"env_args.{key}: {name} has no option {key!r}{hint}. {options}.")
        default = known[key].default
        if default is not known[key].empty and default is not None and value is not None:
            expected = type(default)
            ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                ok = True
            if expected in (int, float, str, bool) and not ok:
                raise EnvError(f"env_args.{key}={value!r}: {name} expects {expected.__name__} (default {default!r}). "
                               f"{options}.")
    missing = [k for k, p in known.items() if p.default is p.empty and k not in env_args]
    if missing:
        raise EnvError(f"env_args: {name} needs {', '.join(missing)}. {options}.")


def load_environment(name: str, env_args: Mapping[str, Any] | None = None) -> EnvSpec:
    """The :class:`EnvSpec` of environment ``name`` built with ``env_args``; every mistake is one line (EnvError)."""
    env_args = dict(env_args or {})
    loader = environment_loader(name)
    check_env_args(name, loader, env_args)
    try:
        spec = loader(**env_args)
    except (ValueError, TypeError) as e:  # the environment's own check of a value (an unknown preset, ...)
        raise EnvError(f"env_args for {name}: {' '.join(str(e).split())}") from None
    if not isinstance(spec, EnvSpec):
        raise EnvError(f"env_name={name!r}: load_environment returned {type(spec).__name__}, not an EnvSpec.")
    return spec


def default_env_args(name: str) -> dict[str, Any]:
    """The defaults of an environment's options (what an omitted ``env_args`` key means)."""
    return {k: p.default for k, p in parameters(environment_loader(name)).items() if p.default is not p.empty}


def task_window(dataset, skip: int = 0, count: int | None = None):
    """The ``count`` tasks of ``dataset`` after its first ``skip`` (all the rest when ``count`` is None)."""
    end = len(dataset) if count is None else skip + count
    return dataset.select(range(min(skip, len(dataset)), min(end, len(dataset))))
