"""The skill bank: per-task (or per-scenario) skills, UCB1 retrieval, persistence.

Scope (``scope``): which tasks share skills. ``"task"`` (the paper's, the default): every task has a bank of its own.
``"scenario"``: skills are stored, retrieved and scored per *scenario*, a family of related tasks, named by a ``key``
function ``task_id -> scenario`` (an environment's ``EnvSpec.scenario_of``; the offline app world: a task's
template). Every public method still takes task ids and applies the key itself (``add`` keys ``skill.task_id``), so a
skill written about one task of a scenario conditions the teacher on every other task of that scenario, and
everything below that says "task" (UCB's ``N``, capacity, eviction, de-duplication) means "scenario" there. A
stored skill keeps the ``task_id`` it was written for (its ``skill_id`` is ``"<that task>#<n>"``).

Selection (``strategy``):

* ``"ucb"`` (the paper's): never-selected skills first, oldest first; otherwise the highest
  ``mean_reward(e) + c * sqrt(ln N / n(e))`` where ``n(e)`` is how many times ``e`` was selected, ``N`` the sum of
  ``n`` over the task's skills in the bank, and ``mean_reward(e)`` the mean reward of the rollouts reported through
  :meth:`SkillBank.record_outcome` for ``e`` (0 while none is reported yet). Ties go to the older skill.
* ``"latest"``: the most recently added skill.
* ``"best"``: the highest mean reward among skills with reported rollouts (ties: the newer); the latest skill when
  none has any.

Capacity (``capacity_per_task``), when a new skill arrives for a full task (``eviction``):

* ``"worst"`` (default): remove the skill with the lowest mean reward among those with reported rollouts (ties: the
  older), except the best-rated one. Skills without any reported rollout are protected (they have not had their
  chance yet), and so is the best-rated skill (the incumbent UCB falls back on): when no other rated skill is left,
  the oldest unrated skill goes; when every skill is rated, the worst goes. Protecting the incumbent matters with
  per-trajectory summaries, where a task receives up to G new (unrated) skills per step: without it the one skill
  known to work would be the first to go.
* ``"oldest"``: first in, first out.

De-duplication: a skill whose three fields equal, after case folding and whitespace collapsing, those of a skill
of the same task in the bank, or of one evicted from it (the last 256 per task are remembered, so a summarizer
that keeps writing an evicted skill cannot churn the bank), is rejected and counted.

Distributed runs: every rank selects a skill for the tasks of its slice of the batch, so one selection of a task's
skill per generation batch shows up on every rank that holds part of the task's group. :func:`combine_rank_deltas`
merges the ranks' :meth:`SkillBank.drain_deltas` so that it counts once: selections and outcome reports are the
maximum over ranks, reward sums and reward counts the sum. Deltas are kept per *task* id in either scope (a
``(task, skill)`` pair is what one rank's selection is), and :meth:`SkillBank.merge_deltas` keys them: two tasks of
one scenario that conditioned the same skill in one window count as two selections of it.

Everything is guarded by one lock, so the trainer's ``select``/``record_outcome`` and a background summarizer's
``add`` may run concurrently. ``save`` writes atomically (temp file in the same folder, fsync, ``os.replace``):
a crash mid-save leaves the previous file intact.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..atomic import atomic_write_json
from .provider import SkillSelection
from .schema import Skill

BANK_VERSION = 1
STRATEGIES = ("ucb", "latest", "best")
EVICTIONS = ("worst", "oldest")
SCOPES = ("task", "scenario")
EVICTED_MEMORY = 256


@dataclass
class SkillEntry:
    """A stored skill and its bandit statistics."""

    skill: Skill
    selections: int = 0  # times select() returned it: n(e) of UCB1
    outcomes: int = 0  # record_outcome() calls for it
    reward_sum: float = 0.0  # sum of the rewards of the rollouts it conditioned
    reward_count: int = 0  # number of those rollouts
    added_seq: int = 0  # bank-wide insertion order

    @property
    def mean_reward(self) -> float | None:
        return self.reward_sum / self.reward_count if self.reward_count else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["skill"] = self.skill.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SkillEntry":
        data = dict(data)
        data["skill"] = Skill.from_dict(data["skill"])
        return cls(**data)


Deltas = Mapping[str, Mapping[str, Sequence[float]]]


def combine_rank_deltas(per_rank: Sequence[Deltas]) -> dict[str, dict[str, list[float]]]:
    """Merge the :meth:`SkillBank.drain_deltas` of all ranks for one synchronisation window into the bank's change.

    All ranks hold the same bank and UCB is deterministic, so every rank that holds part of a task's group selects the
    same skill for it and reports its own slice's rewards. A ``(task, skill)`` selection is one selection however
    many ranks saw it: ``selections`` and ``outcomes`` are the **maximum** over ranks, ``reward_sum`` and
    ``reward_count`` (the rollouts themselves) the **sum**. Pure: the inputs are not modified.

    Assumes one selection window per sync (one generation batch per optimizer step, TRL's default). With several
    generation batches between two syncs, a task whose batches landed on different ranks is under-counted (the
    maximum of 1 and 1 is 1, not 2); the rewards are still all counted.
    """
    combined: dict[str, dict[str, list[float]]] = {}
    for deltas in per_rank:
        for task_id, per_skill in (deltas or {}).items():
            for skill_id, (sel, outs, rsum, rcount) in per_skill.items():
                acc = combined.setdefault(task_id, {}).setdefault(skill_id, [0, 0, 0.0, 0])
                acc[0] = max(acc[0], int(sel))
                acc[1] = max(acc[1], int(outs))
                acc[2] += float(rsum)
                acc[3] += int(rcount)
    return combined


def subtract_deltas(total: Deltas, part: Deltas) -> dict[str, dict[str, list[float]]]:
    """``total - part`` per ``(task, skill)`` and statistic, dropping all-zero entries: what a bank that already
    recorded ``part`` (rank 0's own feedback) must still :meth:`SkillBank.merge_deltas` to hold ``total``. Pure."""
    out: dict[str, dict[str, list[float]]] = {}
    for task_id, per_skill in total.items():
        for skill_id, values in per_skill.items():
            own = (part.get(task_id) or {}).get(skill_id, (0, 0, 0.0, 0))
            diff = [int(values[0]) - int(own[0]), int(values[1]) - int(own[1]), float(values[2]) - float(own[2]),
                    int(values[3]) - int(own[3])]
            if any(diff):
                out.setdefault(task_id, {})[skill_id] = diff
    return out


def _key_hash(skill: Skill) -> str:
    return hashlib.sha1(skill.normalized_key().encode("utf-8")).hexdigest()[:20]


class SkillBank:
    """Per-task (or per-scenario) skill store implementing :class:`~skill_sd_trl.skills.provider.SkillProvider`.

    Args:
        capacity_per_task: maximum skills kept per bank key (per task; per scenario with ``scope="scenario"``).
        strategy: ``"ucb"``, ``"latest"`` or ``"best"`` (see the module docstring).
        ucb_c: exploration constant ``c`` of UCB1.
        eviction: ``"worst"`` or ``"oldest"``.
        scope: ``"task"`` (the paper's) or ``"scenario"`` (see the module docstring); saved with the bank.
        key: with ``scope="scenario"``, the function ``task_id -> scenario``. Without one the ids given to the bank
            are taken as scenario names already (a bank loaded for inspection, e.g. by ``show-bank``). Not saved.
    """

    def __init__(self, capacity_per_task: int = 8, strategy: str = "ucb", ucb_c: float = 1.0, eviction: str = "worst",
                 scope: str = "task", key: Callable[[str], str] | None = None):
        if capacity_per_task < 1:
            raise ValueError(f"capacity_per_task={capacity_per_task} must be >= 1")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy={strategy!r} is not supported; use one of {STRATEGIES}")
        if eviction not in EVICTIONS:
            raise ValueError(f"eviction={eviction!r} is not supported; use one of {EVICTIONS}")
        if not (ucb_c >= 0 and math.isfinite(ucb_c)):
            raise ValueError(f"ucb_c={ucb_c} must be a finite number >= 0")
        if scope not in SCOPES:
            raise ValueError(f"scope={scope!r} is not supported; use one of {SCOPES}")
        if key is not None and scope == "task":
            raise ValueError("a key function groups tasks into scenarios: pass scope='scenario' with it")
        if key is not None and not callable(key):
            raise TypeError(f"key must be a function task_id -> scenario, got {type(key).__name__}")
        self.capacity_per_task = int(capacity_per_task)
        self.strategy = strategy
        self.ucb_c = float(ucb_c)
        self.eviction = eviction
        self.scope = scope
        self.key = key
        self._lock = threading.RLock()
        self._reset_state()

    def _reset_state(self) -> None:
        self._tasks: dict[str, list[SkillEntry]] = {}
        self._evicted: dict[str, list[str]] = {}
        self._key_index: dict[str, set[str]] = {}
        self._next_seq = 0
        self._counters = {
            "added": 0,
            "duplicates": 0,
            "evicted": 0,
            "selections": 0,
            "outcomes": 0,
            "unknown_outcomes": 0,
            "nonfinite_rewards": 0,
            "cross_task_selections": 0,
        }
        # scope="scenario": the task ids seen under each scenario (skills written about them, selections for them).
        self._seen: dict[str, set[str]] = {}
        # Statistics changes since the last drain_deltas(); lets ranks of a distributed run merge their feedback.
        self._deltas: dict[str, dict[str, list[float]]] = {}

    # -- keys -----------------------------------------------------------------------------------------------
    def key_of(self, task_id: str) -> str:
        """The bank key ``task_id``'s skills live under: the task id itself, or its scenario (``scope="scenario"``
        with a ``key`` function)."""
        if self.key is None:
            return task_id
        try:
            scenario = self.key(task_id)
        except Exception as exc:  # the environment's own message says what a task id should look like
            raise ValueError(f"skill bank scope 'scenario': no scenario for task {task_id!r}: {exc}") from exc
        if not isinstance(scenario, str) or not scenario:
            raise ValueError(f"skill bank scope 'scenario': the scenario of task {task_id!r} must be a non-empty "
                             f"string, got {scenario!r}")
        return scenario

    def _bank_key(self, task_id: str | None, bank_key: str | None) -> str:
        if (task_id is None) == (bank_key is None):
            raise TypeError("pass a task id, or bank_key= one of bank_keys() (a scenario under scope 'scenario')")
        return bank_key if bank_key is not None else self.key_of(task_id)

    def _see(self, bank_key: str, task_id: str) -> None:
        """Remember that ``task_id`` belongs to ``bank_key`` (scenario scope only: ``tasks()`` and ``stats()``)."""
        if self.scope != "task":
            self._seen.setdefault(bank_key, set()).add(task_id)

    # -- adding ---------------------------------------------------------------------------------------------
    def add(self, skill: Skill) -> bool:
        """Store a copy of ``skill`` under the bank key of ``skill.task_id``; return False for a duplicate.

        The stored copy gets a bank-unique ``skill_id`` (``"<task_id>#<n>"``, the task it was written for).
        """
        if not isinstance(skill, Skill):
            raise TypeError(f"SkillBank.add expects a Skill, got {type(skill).__name__}")
        if not skill.task_id:
            raise ValueError("skill.task_id is empty; set the task the skill was written for before adding it")
        text_hash = _key_hash(skill)
        bank_key = self.key_of(skill.task_id)
        with self._lock:
            self._see(bank_key, skill.task_id)
            entries = self._tasks.setdefault(bank_key, [])
            evicted = self._evicted.setdefault(bank_key, [])
            hashes = self._hashes_of(bank_key)
            if text_hash in hashes or text_hash in evicted:
                self._counters["duplicates"] += 1
                return False
            if len(entries) >= self.capacity_per_task:
                victim = self._victim(entries)
                entries.remove(victim)
                victim_hash = _key_hash(victim.skill)
                hashes.discard(victim_hash)
                evicted.append(victim_hash)
                del evicted[:-EVICTED_MEMORY]
                self._counters["evicted"] += 1
            hashes.add(text_hash)
            stored = copy.deepcopy(skill)
            stored.skill_id = f"{skill.task_id}#{self._next_seq}"
            entries.append(SkillEntry(skill=stored, added_seq=self._next_seq))
            self._next_seq += 1
            self._counters["added"] += 1
            return True

    def _hashes_of(self, bank_key: str) -> set[str]:
        """Normalised-text hashes of the key's stored skills (an index rebuilt lazily after a load)."""
        hashes = self._key_index.get(bank_key)
        if hashes is None:
            hashes = self._key_index[bank_key] = {_key_hash(e.skill) for e in self._tasks.get(bank_key, [])}
        return hashes

    def _victim(self, entries: list[SkillEntry]) -> SkillEntry:
        if self.eviction == "oldest" or len(entries) == 1:
            return min(entries, key=lambda e: e.added_seq)
        rated = [e for e in entries if e.reward_count]
        unrated = [e for e in entries if not e.reward_count]
        if not rated:
            return min(entries, key=lambda e: e.added_seq)
        if unrated:  # keep the incumbent: the best-rated skill (ties: the newer, as in "best")
            best = max(rated, key=lambda e: (e.mean_reward, e.added_seq))
            rated = [e for e in rated if e is not best]
            if not rated:
                return min(unrated, key=lambda e: e.added_seq)
        return min(rated, key=lambda e: (e.mean_reward, e.added_seq))

    # -- selection ------------------------------------------------------------------------------------------
    def ucb_scores(self, task_id: str | None = None, *, bank_key: str | None = None) -> dict[str, float]:
        """UCB1 score of every skill of the task (``inf`` for never-selected ones); ``bank_key=`` names one of
        :meth:`bank_keys` (a scenario) instead of a task."""
        bank_key = self._bank_key(task_id, bank_key)
        with self._lock:
            total = self._total(bank_key)
            return {e.skill.skill_id: self._ucb(e, total) for e in self._tasks.get(bank_key, [])}

    def _total(self, bank_key: str) -> int:
        return sum(e.selections for e in self._tasks.get(bank_key, []))

    def _ucb(self, entry: SkillEntry, total: int) -> float:
        if entry.selections == 0:
            return math.inf
        mean = entry.mean_reward or 0.0
        return mean + self.ucb_c * math.sqrt(math.log(total) / entry.selections)

    def _choose(self, bank_key: str, strategy: str) -> SkillEntry | None:
        entries = self._tasks.get(bank_key)
        if not entries:
            return None
        if strategy == "latest":
            return max(entries, key=lambda e: e.added_seq)
        if strategy == "best":
            rated = [e for e in entries if e.reward_count]
            if not rated:
                return max(entries, key=lambda e: e.added_seq)
            return max(rated, key=lambda e: (e.mean_reward, e.added_seq))
        total = self._total(bank_key)
        # max() keeps the first of equal scores; entries are in insertion order, so ties go to the older skill.
        return max(entries, key=lambda e: self._ucb(e, total))

    def select(self, task_id: str, example: Mapping[str, Any] | None = None) -> SkillSelection | None:
        """Choose the skill that conditions the teacher for ``task_id`` (counts as one selection)."""
        bank_key = self.key_of(task_id)
        with self._lock:
            self._see(bank_key, task_id)
            entry = self._choose(bank_key, self.strategy)
            if entry is None:
                return None
            entry.selections += 1
            self._counters["selections"] += 1
            if entry.skill.task_id != task_id:
                self._counters["cross_task_selections"] += 1
            self._delta(task_id, entry.skill.skill_id)[0] += 1
            return SkillSelection(skill_id=entry.skill.skill_id, text=entry.skill.to_text())

    def peek(self, task_id: str, strategy: str | None = None) -> Skill | None:
        """The skill ``select`` would return now, without counting a selection (for inspection/evaluation)."""
        strategy = strategy or self.strategy
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy={strategy!r} is not supported; use one of {STRATEGIES}")
        bank_key = self.key_of(task_id)
        with self._lock:
            entry = self._choose(bank_key, strategy)
            return None if entry is None else copy.deepcopy(entry.skill)

    def record_outcome(self, task_id: str, skill_id: str, rewards: Sequence[float]) -> None:
        """Add the rewards of the rollouts that ``skill_id`` conditioned. Unknown ids (evicted skills, ids from
        another provider) are counted and ignored; non-finite rewards are counted and skipped."""
        values = [float(r) for r in rewards]
        finite = [r for r in values if math.isfinite(r)]
        bank_key = self.key_of(task_id)
        with self._lock:
            self._counters["nonfinite_rewards"] += len(values) - len(finite)
            entry = self._find(bank_key, skill_id)
            if entry is None:
                self._counters["unknown_outcomes"] += 1
                return
            entry.outcomes += 1
            entry.reward_sum += sum(finite)
            entry.reward_count += len(finite)
            self._counters["outcomes"] += 1
            delta = self._delta(task_id, skill_id)
            delta[1] += 1
            delta[2] += sum(finite)
            delta[3] += len(finite)

    def _find(self, bank_key: str, skill_id: str) -> SkillEntry | None:
        for entry in self._tasks.get(bank_key, []):
            if entry.skill.skill_id == skill_id:
                return entry
        return None

    # -- distributed feedback ---------------------------------------------------------------------------------
    def _delta(self, task_id: str, skill_id: str) -> list[float]:
        return self._deltas.setdefault(task_id, {}).setdefault(skill_id, [0, 0, 0.0, 0])

    def drain_deltas(self) -> dict[str, dict[str, list[float]]]:
        """Statistics added by ``select``/``record_outcome`` since the last drain:
        ``{task_id: {skill_id: [selections, outcomes, reward_sum, reward_count]}}``, per task id in either scope."""
        with self._lock:
            deltas, self._deltas = self._deltas, {}
            return deltas

    def merge_deltas(self, deltas: Mapping[str, Mapping[str, Sequence[float]]]) -> None:
        """Add ``deltas`` (in :meth:`drain_deltas` form) to this bank's statistics (skills no longer in this bank are
        skipped). In a distributed run, apply the ranks' deltas combined by :func:`combine_rank_deltas`, minus what
        this bank recorded itself (:func:`subtract_deltas`): adding each rank's deltas would count a task whose group
        is split across ranks once per rank. Task ids are keyed as in :meth:`select`."""
        keyed = [(task_id, self.key_of(task_id), per_skill) for task_id, per_skill in deltas.items()]
        with self._lock:
            for task_id, bank_key, per_skill in keyed:
                for skill_id, (sel, outs, rsum, rcount) in per_skill.items():
                    entry = self._find(bank_key, skill_id)
                    if entry is None:
                        self._counters["unknown_outcomes"] += int(outs)
                        continue
                    self._see(bank_key, task_id)
                    entry.selections += int(sel)
                    entry.outcomes += int(outs)
                    entry.reward_sum += float(rsum)
                    entry.reward_count += int(rcount)
                    self._counters["selections"] += int(sel)
                    self._counters["outcomes"] += int(outs)
                    if entry.skill.task_id != task_id:
                        self._counters["cross_task_selections"] += int(sel)

    # -- inspection -------------------------------------------------------------------------------------------
    def bank_keys(self) -> list[str]:
        """The bank keys that hold skills: task ids, or scenarios with ``scope="scenario"``."""
        with self._lock:
            return [k for k, entries in self._tasks.items() if entries]

    def tasks(self) -> list[str]:
        """The task ids that would get a skill now: the keys holding skills (scope ``"task"``); with
        ``scope="scenario"``, the tasks seen so far (skills written about them, selections for them) whose scenario
        holds skills."""
        with self._lock:
            if self.scope == "task":
                return self.bank_keys()
            return [t for k, entries in self._tasks.items() if entries for t in sorted(self._seen.get(k, ()))]

    def skills(self, task_id: str | None = None, *, bank_key: str | None = None) -> list[Skill]:
        """Copies of the skills a task can be given (``bank_key=``: of one of :meth:`bank_keys`), oldest first."""
        bank_key = self._bank_key(task_id, bank_key)
        with self._lock:
            return [copy.deepcopy(e.skill) for e in self._tasks.get(bank_key, [])]

    def entries(self, task_id: str | None = None, *, bank_key: str | None = None) -> list[SkillEntry]:
        """Copies of the task's entries (``bank_key=``: of one of :meth:`bank_keys`), oldest first."""
        bank_key = self._bank_key(task_id, bank_key)
        with self._lock:
            return copy.deepcopy(self._tasks.get(bank_key, []))

    def __len__(self) -> int:
        with self._lock:
            return sum(len(entries) for entries in self._tasks.values())

    def stats(self) -> dict[str, Any]:
        """Sizes and cumulative counters (added, duplicates, evicted, selections, outcomes, ...).

        ``tasks_with_skills`` counts :meth:`tasks`, ``keys_with_skills`` the bank keys holding skills (the same under
        scope ``"task"``; scenarios under ``"scenario"``), ``max_skills_per_task`` the fullest key;
        ``cross_task_selections`` the selections of a skill written about another task of the scenario."""
        with self._lock:
            sizes = [len(entries) for entries in self._tasks.values() if entries]
            return {
                "skills": sum(sizes),
                "tasks_with_skills": len(self.tasks()),
                "keys_with_skills": len(sizes),
                "max_skills_per_task": max(sizes, default=0),
                **self._counters,
            }

    # -- persistence ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The complete state (configuration with the scope, skills, statistics, counters), JSON-serialisable.
        The ``key`` function is not: a bank keyed by scenario is saved with its scenario names and ``"scope":
        "scenario"``; give the function again when loading it for training."""
        with self._lock:
            tasks = {}
            for bank_key, entries in self._tasks.items():
                tasks[bank_key] = {"entries": [e.to_dict() for e in entries],
                                   "evicted": list(self._evicted.get(bank_key, []))}
                if self.scope != "task":
                    tasks[bank_key]["seen"] = sorted(self._seen.get(bank_key, ()))
            return {
                "version": BANK_VERSION,
                "config": {
                    "capacity_per_task": self.capacity_per_task,
                    "strategy": self.strategy,
                    "ucb_c": self.ucb_c,
                    "eviction": self.eviction,
                    "scope": self.scope,
                },
                "next_seq": self._next_seq,
                "counters": dict(self._counters),
                "tasks": tasks,
            }

    state_dict = to_dict

    def load_state_dict(self, data: Mapping[str, Any]) -> None:
        """Replace this bank's content in place with ``data`` (from :meth:`to_dict`), configuration included; the
        scope must be this bank's (``ValueError`` otherwise) and the ``key`` function stays.

        In place matters: the trainer and the callback hold references to the same bank object.
        """
        other = SkillBank.from_dict(data)
        if other.scope != self.scope:
            raise ValueError(f"the skill bank to load is keyed per {other.scope} (scope {other.scope!r}), this one per "
                             f"{self.scope}: resume with bank_scope: {other.scope}, or start from an empty bank")
        with self._lock:
            self.capacity_per_task = other.capacity_per_task
            self.strategy = other.strategy
            self.ucb_c = other.ucb_c
            self.eviction = other.eviction
            self._tasks = other._tasks
            self._evicted = other._evicted
            self._seen = other._seen
            self._key_index = {}
            self._next_seq = other._next_seq
            self._counters = other._counters
            self._deltas = {}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], key: Callable[[str], str] | None = None) -> "SkillBank":
        """A bank from :meth:`to_dict` output; ``key``: the scenario function of a bank saved with
        ``scope="scenario"`` (see the class). Files written before scopes existed are per task."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a skill bank state must be a JSON object, got {type(data).__name__}")
        version = data.get("version")
        if version != BANK_VERSION:
            raise ValueError(f"unsupported skill bank version {version!r}; this code reads version {BANK_VERSION}")
        try:
            config = dict(data["config"])
            if key is not None and config.get("scope", "task") == "task":
                raise ValueError("this skill bank is keyed per task (scope 'task'): it takes no scenario function")
            bank = cls(**config, key=key)
            bank._next_seq = int(data["next_seq"])
            bank._counters.update({k: int(v) for k, v in data["counters"].items()})
            for bank_key, task in data["tasks"].items():
                bank._tasks[bank_key] = [SkillEntry.from_dict(e) for e in task["entries"]]
                bank._evicted[bank_key] = [str(h) for h in task.get("evicted", [])]
                if bank.scope != "task":
                    bank._seen[bank_key] = {str(t) for t in task.get("seen", [])}
        except KeyError as exc:
            raise ValueError(f"skill bank state is missing the field {exc.args[0]!r}") from exc
        return bank

    def save(self, path: str | os.PathLike) -> None:
        """Write the bank to ``path`` atomically (the previous file survives a crash mid-write)."""
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike, key: Callable[[str], str] | None = None) -> "SkillBank":
        """Read a bank written by :meth:`save` (``key``: as in :meth:`from_dict`)."""
        return cls.from_dict(read_bank_file(path), key=key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SkillBank) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"SkillBank(skills={s['skills']}, tasks={s['tasks_with_skills']}, strategy={self.strategy!r}, "
            f"capacity_per_task={self.capacity_per_task}, scope={self.scope!r})"
        )


def read_bank_file(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON state in a skill bank file (``ValueError`` for one that is not JSON)."""
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not a valid skill bank file: {exc}") from exc


def bank_scope_of(data: Mapping[str, Any]) -> str:
    """The scope a saved bank state was keyed by (``"task"`` for files written before scopes existed)."""
    config = data.get("config") if isinstance(data, Mapping) else None
    return str(config.get("scope", "task")) if isinstance(config, Mapping) else "task"
