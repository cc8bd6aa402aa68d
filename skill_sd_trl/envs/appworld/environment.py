"""The app world's entry points, registered as ``appworld_offline`` (the offline world of this package) and
``appworld`` (a real AppWorld environment server): ``load_environment(**env_args) -> EnvSpec``.

Their signatures are the lists of their options; a recipe writes them under ``env_args:``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import partial

from ..base import EnvSpec
from . import summary
from .data import PROMPT_STYLES, REAL_SPLITS, build_prompt, make_appworld_dataset, make_offline_appworld_dataset
from .env import AppWorldEnv, OfflineAppWorldEnv
from .offline.tasks import (
    DEFAULT_TASKS_PER_TEMPLATE,
    SPLITS,
    TEMPLATES,
    build_task,
    make_task_id,
    parse_task_id,
    without_preamble,
)

#: Demonstration worlds are drawn from this seed family up, far from any task set an RL recipe uses (seeds 0, 1, ...).
DEMONSTRATION_SEED_BASE = 10_000


def load_offline_environment(seed: int = 0, tasks_per_template: int = DEFAULT_TASKS_PER_TEMPLATE,
                             prompt_style: str = "full", held_out_templates: int = 0,
                             eval_tasks_per_template: int | None = None,
                             max_observation_chars: int = 4000) -> EnvSpec:
    """The offline app world: 24 task templates over 6 apps, each task on its own generated world, agent code run
    in a sandbox (no AppWorld data needed).

    Args:
        seed: the task set: a family of worlds (train and dev tasks of one seed are drawn on different worlds).
        tasks_per_template: tasks per template and split (3: 72 train and 72 dev tasks).
        eval_tasks_per_template: tasks per template of the held-out splits (``dev``, ``unseen``) when it differs:
            few training tasks recur often in a short run, many held-out ones make a finer Acc.
        prompt_style: ``full`` (the whole protocol, APIs discovered through apis.api_docs) or ``compact`` (a short
            protocol and the signatures of the task's apps; the session starts with ``passwords``, ``me`` and
            ``fetch_all`` defined, so solutions are shorter: a CPU-scale simplification, offline only).
        held_out_templates: this many templates (a fixed choice, the same for every seed) are never trained on: the
            ``train`` and ``dev`` splits hold the others, and the split ``unseen`` holds their dev tasks (skills that
            transfer across scenarios show there).
        max_observation_chars: longer execution outputs are trimmed (head and tail kept).
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed={seed!r}: a world-family seed is an integer >= 0")
    if seed >= DEMONSTRATION_SEED_BASE:
        raise ValueError(f"seed={seed}: seeds from {DEMONSTRATION_SEED_BASE} up hold the warm starts' demonstrations")
    for name, value in (("tasks_per_template", tasks_per_template), ("eval_tasks_per_template",
                                                                     eval_tasks_per_template)):
        if value is not None and value < 1:
            raise ValueError(f"{name}={value}: must be >= 1")
    if prompt_style not in PROMPT_STYLES:
        raise ValueError(f"prompt_style={prompt_style!r}: choose one of {', '.join(PROMPT_STYLES)}")
    trained, unseen = template_split(held_out_templates)
    return EnvSpec(
        name="appworld_offline",
        make_dataset=partial(_offline_dataset, seed, tasks_per_template, eval_tasks_per_template or tasks_per_template,
                             prompt_style, trained, unseen),
        make_env=partial(OfflineAppWorldEnv, max_observation_chars=max_observation_chars,
                         init_kwargs={"helpers": True} if prompt_style == "compact" else None),
        train_split="train", eval_split="dev", max_turns=40, max_new_tokens_per_turn=256, task_set_arg="seed",
        summary_prompt=summary.SUMMARY_PROMPT, events=summary.EVENTS,
        demonstrations=partial(demonstrations, prompt_style, trained), scenario_of=scenario_of,
    )


def scenario_of(task_id: str) -> str:
    """A task's scenario: its template (the same task drawn on other worlds)."""
    return parse_task_id(task_id)[0]


def template_split(held_out: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(trained, held-out) templates: ``held_out`` of them chosen by a fixed seeded shuffle, difficulties mixed."""
    names = list(TEMPLATES)
    if not 0 <= held_out < len(names):
        raise ValueError(f"held_out_templates={held_out}: must be between 0 and {len(names) - 1}")
    shuffled = names[:]
    random.Random("offline-appworld|held-out-templates").shuffle(shuffled)
    unseen = set(shuffled[:held_out])
    return tuple(n for n in names if n not in unseen), tuple(n for n in names if n in unseen)


def _offline_dataset(seed: int, tasks_per_template: int, eval_tasks_per_template: int, prompt_style: str,
                     trained: tuple[str, ...], unseen: tuple[str, ...], split: str):
    splits = (*SPLITS, "unseen") if unseen else SPLITS
    if split not in splits:
        raise ValueError(f"split={split!r}: the offline app world's splits are {', '.join(splits)}")
    templates = unseen if split == "unseen" else trained
    count = tasks_per_template if split == "train" else eval_tasks_per_template
    return make_offline_appworld_dataset(split="dev" if split == "unseen" else split, seed=seed,
                                         tasks_per_template=count, prompt_style=prompt_style, templates=templates)


def demonstrations(prompt_style: str, templates: tuple[str, ...], count: int, seed: int,
                   exclude_task_sets: Sequence[int]) -> list[dict]:
    """``count`` tasks of ``templates`` (round robin) with their reference solution as one code turn (``answer``),
    each on a world of its own from the demonstration seed family: never a world of a train or dev task of any
    task set (their seeds are below :data:`DEMONSTRATION_SEED_BASE`; ``exclude_task_sets`` must be too)."""
    if any(s >= DEMONSTRATION_SEED_BASE for s in exclude_task_sets):
        raise ValueError(f"exclude_task_sets: task sets from {DEMONSTRATION_SEED_BASE} up are demonstration worlds")
    rows = []
    for i in range(count):
        name = templates[i % len(templates)]
        task_id = make_task_id(name, "train", i // len(templates), DEMONSTRATION_SEED_BASE + seed)
        task = build_task(task_id)
        code = without_preamble(task.solution) if prompt_style == "compact" else task.solution
        rows.append({"prompt": build_prompt(task.instruction, task.supervisor, task.world.now.isoformat(),
                                            style=prompt_style, apps=task.apps),
                     "task_id": task_id, "ground_truth": code, "difficulty": task.difficulty,
                     "answer": f"```python\n{code.strip()}\n```"})
    return rows


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
