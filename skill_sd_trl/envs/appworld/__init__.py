"""AppWorld for skill-sd-trl: an HTTP client of the AppWorld environment-server protocol, the
:class:`AppWorldEnv` text environment on top of it, dataset builders, and an offline app world (written from
scratch, sandboxed, served over the same protocol) for training and tests without AppWorld's data.

Quick start (offline)::

    from skill_sd_trl.envs.appworld import OfflineAppWorldEnv, make_offline_appworld_dataset

    dataset = make_offline_appworld_dataset("train")
    env = OfflineAppWorldEnv()  # starts a local offline server once per process
    env.reset(dataset[0])
    result = env.step("```python\\nprint(apis.api_docs.show_app_descriptions())\\n```")
    score = env.score()  # Acc. = score.success, Comp. = score.completion
    env.close()

See docs/appworld.md for the real AppWorld.
"""

from .client import AppWorldClient, AppWorldServerError, EvaluationResult
from .data import (
    build_prompt,
    load_appworld_task_ids,
    make_appworld_dataset,
    make_offline_appworld_dataset,
)
from .env import AppWorldEnv, OfflineAppWorldEnv, extract_code, observation_events, trim_observation
from .environment import load_environment, load_offline_environment
from .offline.server import OfflineAppWorldServer, default_offline_server_url, stop_default_offline_server

__all__ = [
    "AppWorldClient",
    "AppWorldEnv",
    "AppWorldServerError",
    "EvaluationResult",
    "OfflineAppWorldEnv",
    "OfflineAppWorldServer",
    "build_prompt",
    "default_offline_server_url",
    "extract_code",
    "load_appworld_task_ids",
    "load_environment",
    "load_offline_environment",
    "make_appworld_dataset",
    "make_offline_appworld_dataset",
    "observation_events",
    "stop_default_offline_server",
    "trim_observation",
]
