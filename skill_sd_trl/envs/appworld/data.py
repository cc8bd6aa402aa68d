"""Datasets of AppWorld tasks: conversational prompts with stable task ids, for the offline world and the real one.

Columns (both builders): ``prompt`` (system message with the API-calling protocol and code format + user
message with the instruction), ``task_id`` (stable), ``ground_truth`` (the reference solution code, used as
the teacher's privileged context by the vanilla-OPD baseline; empty when unavailable), ``env``
(``"appworld_offline"`` / ``"appworld"``: which environment class plays it) and ``max_turns``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from .client import AppWorldClient, AppWorldServerError
from .offline.tasks import DEFAULT_TASKS_PER_TEMPLATE, SPLITS, build_task, task_ids, without_preamble

DEFAULT_MAX_TURNS = 40
REAL_SPLITS = ("train", "dev", "test_normal", "test_challenge")

SYSTEM_PROMPT = """You are an AI assistant that completes tasks for your supervisor by operating their apps \
through Python code.

Your supervisor is {first_name} {last_name} (email {email}, phone number {phone_number}). \
The current date and time is {datetime}.

How to act:
- Each turn, reply with exactly one Python code block:
```python
# your code
```
  It runs in a persistent Python session (variables and functions survive between turns). Whatever you \
print is shown to you in the next message, so print what you need to see.
- Apps are reached only through `apis.<app_name>.<api_name>(**parameters)`. Discover them with \
`apis.api_docs.show_app_descriptions()`, `apis.api_docs.show_api_descriptions(app_name=...)` and \
`apis.api_docs.show_api_doc(app_name=..., api_name=...)`.
- Account passwords are in `apis.supervisor.show_account_passwords()`. Log in with \
`apis.<app_name>.login(username=..., password=...)` and pass the returned `access_token` to that app's other \
APIs.
- Results of search/list APIs are paginated (`page_index`, `page_limit`): keep fetching pages until one comes \
back shorter than the limit.
{sandbox_note}
- Do only what the task asks: do not change anything else.
- When the task is done, call `apis.supervisor.complete_task(answer=...)` once, with the answer if the task \
asks a question (a short string or number), or `apis.supervisor.complete_task()` otherwise."""

OFFLINE_SANDBOX_NOTE = ("- Imports are not available; `json`, `re`, `math`, `datetime`, `Counter` and "
                        "`defaultdict` are already defined. Use f-strings to format text.")
REAL_SANDBOX_NOTE = "- Standard-library modules such as `json`, `re` and `datetime` can be imported."


#: The same protocol in far fewer tokens, followed by the signatures of the task's apps only (CPU recipes: every
#: prompt token is paid per rollout, per turn, in sampling, in the student's pass and in the teacher's). The agent
#: still has apis.api_docs for anything else.
COMPACT_SYSTEM_PROMPT = """Act for {first_name} {last_name} ({email}, phone {phone_number}); now is {datetime}.
Reply with one ```python block per turn; it runs in a persistent session, and what you print is shown to you. \
No imports: json, re, math, datetime, Counter and defaultdict are defined, and so are passwords (app name -> \
password), me (your profile: email, phone_number, ...) and fetch_all(api, **params) (every page of a list API). \
Log in with apis.<app>.login(username=<me["email"]; phone app: me["phone_number"]>, password=passwords[<app>])\
["access_token"] and pass access_token= to that app's APIs.
End with apis.supervisor.complete_task(answer=...), giving an answer only when the task asks a question.
APIs (? marks an optional parameter):
{api_lines}"""
PROMPT_STYLES = ("full", "compact")


def api_lines(apps: Sequence[str]) -> str:
    """One line per API of ``apps``: ``apis.<app>.<api>(params, optional ones with ?) -> keys of the result``. The
    paging parameters and the supervisor's APIs are in the protocol's text instead."""
    from .offline.apps import PAGE_PARAMS, REGISTRY

    paging = {p.name for p in PAGE_PARAMS}
    lines = []
    for app in (a for a in apps if a != "supervisor"):
        for name, spec in REGISTRY[app].items():
            params = (["access_token"] if spec.needs_auth else []) + [
                p.name if p.required else f"{p.name}?" for p in spec.params if p.name not in paging]
            lines.append(f"apis.{app}.{name}({', '.join(params)}) -> {_result_keys(spec.returns)}")
    return "\n".join(lines)


def _result_keys(schema: Any) -> str:
    """A response schema as the keys a model needs: ``[{contact_id, first_name, ...}]``."""
    if isinstance(schema, list):
        return f"[{_result_keys(schema[0])}]" if schema else "[]"
    if isinstance(schema, dict):
        return "{" + ", ".join(schema) + "}"
    return str(schema)


def build_prompt(instruction: str, supervisor: dict[str, Any], datetime: str,
                 sandbox_note: str = OFFLINE_SANDBOX_NOTE, style: str = "full",
                 apps: Sequence[str] = ()) -> list[dict[str, str]]:
    """The conversational prompt of one task (system: protocol; user: the instruction). ``style="compact"``
    states the protocol briefly and lists the signatures of ``apps`` (the offline world's apps)."""
    missing = [k for k in ("first_name", "last_name", "email", "phone_number") if k not in supervisor]
    if missing:
        raise ValueError(f"supervisor is missing {missing}; expected the 'supervisor' object of the task specs")
    if style not in PROMPT_STYLES:
        raise ValueError(f"prompt_style={style!r}: choose one of {', '.join(PROMPT_STYLES)}")
    person = {k: supervisor[k] for k in ("first_name", "last_name", "email", "phone_number")}
    if style == "compact":
        system = COMPACT_SYSTEM_PROMPT.format(datetime=datetime, api_lines=api_lines(apps), **person)
    else:
        system = SYSTEM_PROMPT.format(datetime=datetime, sandbox_note=sandbox_note, **person)
    return [{"role": "system", "content": system}, {"role": "user", "content": f"Task: {instruction}"}]


def make_offline_appworld_dataset(split: str = "train", seed: int = 0, *,
                                  tasks_per_template: int = DEFAULT_TASKS_PER_TEMPLATE,
                                  max_turns: int = DEFAULT_MAX_TURNS, prompt_style: str = "full",
                                  templates: Sequence[str] | None = None):
    """The offline app-world tasks of ``split`` (``"train"`` or ``"dev"``) as a ``datasets.Dataset``.

    Every template contributes ``tasks_per_template`` tasks per split (3 by default: 72 tasks per split);
    train and dev tasks of one template are drawn on different worlds. ``seed`` selects another family of
    worlds (task ids gain a ``-s<seed>`` suffix); the same arguments always give the same rows.
    """
    from datasets import Dataset

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if tasks_per_template < 1:
        raise ValueError(f"tasks_per_template must be >= 1, got {tasks_per_template}")
    if max_turns < 1:
        raise ValueError(f"max_turns must be >= 1, got {max_turns}")
    rows: dict[str, list[Any]] = {"prompt": [], "task_id": [], "ground_truth": [], "env": [], "max_turns": [],
                                  "difficulty": []}
    for task_id in task_ids(split, seed, tasks_per_template, templates):
        task = build_task(task_id)
        rows["prompt"].append(build_prompt(task.instruction, task.supervisor, task.world.now.isoformat(),
                                           style=prompt_style, apps=task.apps))
        rows["task_id"].append(task_id)
        # the reference solution as it runs in this style's session (compact: its helpers already defined)
        rows["ground_truth"].append(without_preamble(task.solution) if prompt_style == "compact" else task.solution)
        rows["env"].append("appworld_offline")
        rows["max_turns"].append(max_turns)
        rows["difficulty"].append(task.difficulty)
    return Dataset.from_dict(rows)


# --------------------------------------------------------------------------------------------------------------
# the real AppWorld
# --------------------------------------------------------------------------------------------------------------

def _appworld_root(root: str | None) -> str | None:
    root = root or os.environ.get("APPWORLD_ROOT")
    return os.path.abspath(os.path.expanduser(root)) if root else None


def _first_url(server_url: str | None) -> str | None:
    """The first of a comma-separated server list (any of them can answer read-only questions)."""
    return server_url.split(",")[0].strip() if server_url else None


def load_appworld_task_ids(split: str, root: str | None = None, server_url: str | None = None) -> list[str]:
    """Task ids of a real AppWorld split, read from ``<root>/data/datasets/<split>.txt`` (``root`` defaults to
    ``$APPWORLD_ROOT``), else asked from ``server_url`` (only servers with a ``/task_ids`` endpoint, e.g. ours).
    """
    root = _appworld_root(root)
    if root is not None:
        path = os.path.join(root, "data", "datasets", f"{split}.txt")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found: run `appworld download data` in {root} (see docs/appworld.md)"
                                    f"; splits are {REAL_SPLITS}")
        with open(path, encoding="utf-8") as handle:
            # Lines may carry a ':tag' suffix in AppWorld's files; the id is the part before it.
            return [line.strip().split(":")[0] for line in handle if line.strip()]
    if server_url is not None:
        try:
            return AppWorldClient(_first_url(server_url)).task_ids(split)
        except AppWorldServerError as error:
            raise AppWorldServerError(f"{error}\nThe real AppWorld server cannot list tasks: set APPWORLD_ROOT (or "
                                      "pass root=) to the folder holding data/datasets/<split>.txt.") from None
    raise ValueError("cannot find AppWorld task ids: pass root= (or set APPWORLD_ROOT) to the AppWorld folder that "
                     "holds data/datasets/<split>.txt, or server_url= of a server with a /task_ids endpoint")


def _task_specs(task_id: str, root: str | None, client: AppWorldClient | None) -> dict[str, Any]:
    if root is not None:
        path = os.path.join(root, "data", "tasks", task_id, "specs.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                specs = json.load(handle)
            return {"instruction": specs["instruction"], "datetime": specs["datetime"],
                    "supervisor": specs.get("supervisor") or specs.get("main_user")}
    if client is None:
        raise FileNotFoundError(f"no specs for task {task_id!r} under {root}/data/tasks and no server_url to ask")
    return client.show_task(task_id)


def _reference_solution(task_id: str, root: str | None) -> str:
    if root is None:
        return ""
    path = os.path.join(root, "data", "tasks", task_id, "ground_truth", "solution.py")
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read()


def make_appworld_dataset(split: str = "train", root: str | None = None, server_url: str | None = None, *,
                          max_turns: int = DEFAULT_MAX_TURNS, limit: int | None = None,
                          include_server_url: bool = False):
    """A dataset of real AppWorld tasks (train 90, dev 57, test_normal 168, test_challenge 417).

    Ids come from :func:`load_appworld_task_ids`; instructions from ``<root>/data/tasks/<id>/specs.json`` or
    the server's ``GET /tasks/<id>``; ``ground_truth`` from ``ground_truth/solution.py`` when present.
    ``server_url`` may list several servers separated by commas (see :class:`AppWorldEnv`); ``include_server_url``
    adds it as a ``server_url`` column (so the rollout loop's env needs no constructor argument).
    """
    from datasets import Dataset

    root = _appworld_root(root)
    client = AppWorldClient(_first_url(server_url)) if server_url else None
    ids = load_appworld_task_ids(split, root, server_url)
    if limit is not None:
        ids = ids[:limit]
    rows: dict[str, list[Any]] = {"prompt": [], "task_id": [], "ground_truth": [], "env": [], "max_turns": []}
    if include_server_url:
        if server_url is None:
            raise ValueError("include_server_url=True needs server_url=")
        rows["server_url"] = []
    for task_id in ids:
        specs = _task_specs(task_id, root, client)
        rows["prompt"].append(build_prompt(specs["instruction"], specs["supervisor"], str(specs["datetime"]),
                                           REAL_SANDBOX_NOTE))
        rows["task_id"].append(task_id)
        rows["ground_truth"].append(_reference_solution(task_id, root))
        rows["env"].append("appworld")
        rows["max_turns"].append(max_turns)
        if include_server_url:
            rows["server_url"].append(server_url)
    return Dataset.from_dict(rows)
