"""The app world's entry points, registered as ``appworld_offline`` (the offline world of this package) and
``appworld`` (a real AppWorld environment server): ``load_environment(**env_args) -> EnvSpec``.

Their signatures are the lists of their options; a recipe writes them under ``env_args:``.
"""

from __future__ import annotations

from functools import partial

from ..base import EnvSpec
from . import summary
from .data import REAL_SPLITS, make_appworld_dataset, make_offline_appworld_dataset
from .env import AppWorldEnv, OfflineAppWorldEnv
from .offline.tasks import DEFAULT_TASKS_PER_TEMPLATE, SPLITS


def load_offline_environment(seed: int = 0, tasks_per_template: int = DEFAULT_TASKS_PER_TEMPLATE,
                             max_observation_chars: int = 4000) -> EnvSpec:
    """The offline app world: 24 task templates over 9 apps, each task on its own generated world, agent code run
    in a sandbox (no AppWorld data needed).

    Args:
        seed: the task set: a family of worlds (train and dev tasks of one seed are drawn on different worlds).
        tasks_per_template: tasks per template and split (3: 72 train and 72 dev tasks).
        max_observation_chars: longer execution outputs are trimmed (head and tail kept).
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed={seed!r}: a world-family seed is an integer >= 0")
    if tasks_per_template < 1:
        raise ValueError(f"tasks_per_template={tasks_per_template}: must be >= 1")
    return EnvSpec(
        name="appworld_offline",
        make_dataset=partial(_offline_dataset, seed, tasks_per_template),
        make_env=partial(OfflineAppWorldEnv, max_observation_chars=max_observation_chars),
        train_split="train", eval_split="dev", max_turns=40, max_new_tokens_per_turn=256, task_set_arg="seed",
        summary_prompt=summary.SUMMARY_PROMPT, events=summary.EVENTS,
    )


def _offline_dataset(seed: int, tasks_per_template: int, split: str):
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: the offline app world's splits are {', '.join(SPLITS)}")
    return make_offline_appworld_dataset(split=split, seed=seed, tasks_per_template=tasks_per_template)


def load_environment(server_url: str | None = None, root: str | None = None,
                     max_observation_chars: int = 4000) -> EnvSpec:
    """The real AppWorld, through its environment server(s) (``appworld serve environment``).

    Args:
        server_url: the server, or a comma-separated list (one episode per server at a time).
        root: an AppWorld data folder (``$APPWORLD_ROOT``) to read task ids, instructions and reference solutions
            from; without it they are asked from the server.
        max_observation_chars: longer execution outputs are trimmed (head and tail kept).
    """
    return EnvSpec(
        name="appworld",
        make_dataset=partial(_real_dataset, root, server_url),
        make_env=partial(AppWorldEnv, server_url, max_observation_chars=max_observation_chars),
        train_split="train", eval_split="dev", max_turns=40, max_new_tokens_per_turn=512,
        summary_prompt=summary.SUMMARY_PROMPT, events=summary.EVENTS,
    )


def _real_dataset(root: str | None, server_url: str | None, split: str):
    if split not in REAL_SPLITS:
        raise ValueError(f"split={split!r}: AppWorld's splits are {', '.join(REAL_SPLITS)}")
    return make_appworld_dataset(split=split, root=root, server_url=server_url)
