"""Asynchronous trajectory-to-skill summarization during training.

:class:`SkillPipeline` takes the finished trajectories from the trainer after every optimizer step and
turns them into summarization **jobs** for a background worker thread. The worker calls the summarizer, parses the
answer (:func:`~skill_sd_trl.skills.schema.parse_skill`) and stores valid skills in the bank. Training never waits
for a summarizer.

Granularity (``skill_granularity``):

* ``"trajectory"`` (default, the paper's): every finished trajectory is one job and yields its own skill. The
  summarizer receives that trajectory as ``focus`` and the task's trajectories of the step as contrast
  (``summarize(group, focus=trajectory)``); the skill describes the focus and stores its reward.
* ``"group"``: one job per task per step over the task's trajectories (``summarize(group)``); the skill stores the
  group's best reward.

A summarizer whose ``summarize`` takes no ``focus`` argument (written for the old interface) gets ``[trajectory]``
alone in trajectory mode, so its skill still describes that trajectory.

Queue overflow policy: the queue holds at most ``max_queue`` jobs (default 512 trajectories in trajectory mode, 64
task groups in group mode); when it is full, the **oldest** waiting job is dropped (and counted in
``skills/dropped``): newer trajectories come from a better policy and are worth more. ``close()`` discards whatever
is still waiting; call ``flush()`` first to keep it (``finish()`` does).

Multi-process runs (``accelerate launch`` / ``torchrun``): every rank pops its own trajectories; at each
``after_step`` they are gathered to the main process, which alone summarizes. The bandit feedback each rank
recorded locally (``select``/``record_outcome``) is merged into the main process's bank (a selection counted once
however many ranks made it: :func:`~skill_sd_trl.skills.bank.combine_rank_deltas`), skills finished by the
worker since the last step are added, and the main bank is broadcast, so every rank holds the same bank at the
same step (and, UCB being deterministic, selects the same skill for the same task). In a single process the worker
adds skills to the bank as soon as they are ready.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .bank import SkillBank, atomic_write_json, combine_rank_deltas, subtract_deltas
from .render import order_for_summary
from .schema import Skill, SkillParseError, parse_skill
from .summarizers import Summarizer, SummarizerError
from .trajectory import Trajectory

logger = logging.getLogger(__name__)

BANK_FILE = "skill_bank.json"
SUMMARIZER_STATE_FILE = "skill_summarizer.json"
GRANULARITIES = ("trajectory", "group")
DEFAULT_MAX_QUEUE = {"trajectory": 512, "group": 64}


@dataclass
class _Job:
    task_id: str
    trajectories: list[Trajectory]  # the task's group of the step (capped); trajectory mode: the contrast pool
    step: int
    focus: Trajectory | None = None  # trajectory mode: the trajectory this job's skill describes
    enqueued: float = field(default_factory=time.monotonic)


def accepts_focus(summarizer: Any) -> bool:
    """Whether ``summarizer.summarize`` takes a ``focus`` keyword (the per-trajectory interface)."""
    try:
        params = inspect.signature(summarizer.summarize).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "focus" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _skill_reward(job: _Job) -> float:
    """The reward a skill stores: its focus trajectory's (trajectory mode), the group's best (group mode)."""
    if job.focus is not None:
        return float(job.focus.reward)
    return max(float(t.reward) for t in job.trajectories)


class _CallTimeout(Exception):
    pass


class SkillPipeline:
    """Everything between finished trajectories and the skill bank: jobs, the background worker, parsing, the bank,
    multi-process synchronisation, checkpoint files and ``skills/*`` metrics. A training loop calls it at named points
    (:meth:`after_step`, :meth:`finish`, :meth:`save_to_checkpoint`, :meth:`load_from_checkpoint`, :meth:`metrics`);
    :class:`~skill_sd_trl.skills.callback.SkillSummarizerCallback` is the ``TrainerCallback`` that does so.

    Args:
        trainer: provides ``pop_finished_trajectories() -> list[Trajectory]``; its ``accelerator`` (if any) tells
            the process layout, else ``torch.distributed`` does, else a single process is assumed.
        summarizer: any :class:`~skill_sd_trl.skills.summarizers.Summarizer`, or ``None``: a fixed bank (curated
            skills), never summarized into, still merged across ranks, saved and restored.
        bank: the :class:`~skill_sd_trl.skills.bank.SkillBank` the trainer selects from.
        skill_granularity: ``"trajectory"`` (default): one job, and one skill, per finished trajectory, summarized
            with the rest of its task's group as contrast; ``"group"``: one job per task per step over the group.
        max_queue: jobs waiting at most; beyond, the oldest is dropped. ``None`` (default): 512 in trajectory mode
            (64 groups of 8 trajectories), 64 in group mode. A job is one trajectory in trajectory mode: a step
            queues ``tasks × num_generations`` jobs, so keep it at several steps' worth.
        call_timeout: seconds one summarizer call may take. A call that overruns is abandoned (its thread is left to
            finish on its own, its result ignored) and counts as a timeout.
        retries: extra attempts after a timeout or a retryable :class:`SummarizerError`; 0 by default, because a
            backend that talks to a server retries itself (the ``openai`` SDK): one retry layer, not two. For a
            custom summarizer without retries of its own. Parse failures are never retried (greedy decoding would
            repeat them).
        retry_backoff: seconds before the first retry, doubled after each.
        max_trajectories_per_task: cap on the trajectories of one task handed over in one call (best and worst kept;
            in trajectory mode the cap applies to the contrast group, and every trajectory still gets its job).
        parse_kwargs: forwarded to :func:`parse_skill` (e.g. ``{"extra_keys": "ignore"}``).
        flush_on_train_end: seconds :meth:`finish` waits for the queue to drain before closing.
        log_metrics: the callback adds :meth:`metrics` into the ``logs`` dict in ``on_log`` (for trainers that do not
            take the pipeline; ``SkillSDTrainer`` adds them itself).
        wait_for_skills: seconds :meth:`after_step` waits for the step's jobs before training goes on (0, the default,
            never waits: summarization overlaps training, as in the paper). A positive value makes a run
            reproducible (the skills a step sees no longer depend on the summarizer's speed), which seeded
            experiments and tests want; with a fast summarizer it costs little.
    """

    def __init__(
        self,
        trainer: Any,
        summarizer: Summarizer | None,
        bank: SkillBank,
        *,
        skill_granularity: str = "trajectory",
        max_queue: int | None = None,
        call_timeout: float = 300.0,
        retries: int = 0,
        retry_backoff: float = 2.0,
        max_trajectories_per_task: int = 64,
        parse_kwargs: dict[str, Any] | None = None,
        flush_on_train_end: float = 60.0,
        log_metrics: bool = True,
        wait_for_skills: float = 0.0,
    ):
        if not callable(getattr(trainer, "pop_finished_trajectories", None)):
            raise TypeError("trainer must provide pop_finished_trajectories() -> list[Trajectory]")
        if summarizer is not None and not callable(getattr(summarizer, "summarize", None)):
            raise TypeError(f"summarizer must have a summarize(trajectories) method, got {type(summarizer).__name__}")
        if skill_granularity not in GRANULARITIES:
            raise ValueError(f"skill_granularity={skill_granularity!r} is not supported; use one of {GRANULARITIES}")
        if max_queue is None:
            max_queue = DEFAULT_MAX_QUEUE[skill_granularity]
        if max_queue < 1 or call_timeout <= 0 or retries < 0 or max_trajectories_per_task < 1 or wait_for_skills < 0:
            raise ValueError("need max_queue >= 1, call_timeout > 0, retries >= 0, max_trajectories_per_task >= 1, "
                             "wait_for_skills >= 0")
        self.trainer = trainer
        self.summarizer = summarizer
        self.bank = bank
        self.skill_granularity = skill_granularity
        self._focus_aware = summarizer is not None and accepts_focus(summarizer)
        self.max_queue = int(max_queue)
        self.call_timeout = float(call_timeout)
        self.retries = int(retries)
        self.retry_backoff = float(retry_backoff)
        self.max_trajectories_per_task = int(max_trajectories_per_task)
        self.parse_kwargs = dict(parse_kwargs or {})
        self.flush_on_train_end = float(flush_on_train_end)
        self.log_metrics = log_metrics
        self.wait_for_skills = float(wait_for_skills)

        self._lock = threading.RLock()  # guards the counters, the pending jobs and the staged skills
        # One worker thread runs the jobs in order; ``_pending`` holds every job not finished yet, oldest first.
        self._executor: ThreadPoolExecutor | None = None
        self._pending: deque[tuple[_Job, Future]] = deque()
        self._staged: list[Skill] = []  # multi-process: skills waiting for the next synchronisation point
        self._layout: tuple[int, int] | None = None
        self._counts: Counter = Counter()
        self._latency_sum = 0.0
        self._latency_n = 0
        self.failure_reasons: Counter = Counter()  # parse-failure / error reasons, for diagnosis
        # A trainer that takes a skill pipeline (SkillSDTrainer) saves, restores and logs it at its own named points;
        # with any other trainer the callback logs its metrics itself (on_log).
        attach = getattr(trainer, "attach_skill_pipeline", None)
        self._attached = callable(attach)
        if self._attached:
            attach(self)

    # -- process layout -------------------------------------------------------------------------------------
    def _world(self) -> tuple[int, int]:
        """(world size, rank), fixed at first use."""
        if self._layout is None:
            acc = getattr(self.trainer, "accelerator", None)
            if acc is not None:
                self._layout = (int(acc.num_processes), int(acc.process_index))
            else:
                import torch.distributed as dist

                if dist.is_available() and dist.is_initialized():
                    self._layout = (dist.get_world_size(), dist.get_rank())
                else:
                    self._layout = (1, 0)
        return self._layout

    @property
    def is_main_process(self) -> bool:
        return self._world()[1] == 0

    # -- queue ----------------------------------------------------------------------------------------------
    def _jobs(self, trajectories: Sequence[Trajectory], step: int) -> list[_Job]:
        groups: dict[str, list[Trajectory]] = {}
        for traj in trajectories:
            groups.setdefault(traj.task_id, []).append(traj)
        jobs: list[_Job] = []
        for task_id, group in groups.items():
            pool = group
            if len(pool) > self.max_trajectories_per_task:
                pool = order_for_summary(pool, self.max_trajectories_per_task)
            if self.skill_granularity == "group":
                jobs.append(_Job(task_id, pool, max([t.step for t in pool] + [step])))
            else:  # every trajectory, kept by the cap or not, gets its own job
                jobs.extend(_Job(task_id, pool, max(t.step, step), focus=t) for t in group)
        return jobs

    def submit(self, trajectories: Sequence[Trajectory], step: int = 0) -> int:
        """Queue ``trajectories`` for summarization; returns the number of jobs queued: one per trajectory in
        trajectory mode, one per task in group mode.

        Never blocks on the summarizer; a full queue drops its oldest waiting job. Without a summarizer (a fixed,
        curated bank) nothing is queued.
        """
        if self.summarizer is None:
            return 0
        jobs = self._jobs(trajectories, step)
        with self._lock:
            if self._executor is None:  # first use, or after close() (a second train() call reopens)
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="skill-summarizer")
            for job in jobs:
                self._drop_oldest_beyond(self.max_queue - 1)
                self._pending.append((job, self._executor.submit(self._run, job)))
                self._counts["submitted"] += 1
        return len(jobs)

    def _drop_oldest_beyond(self, keep: int) -> None:
        """Cancel the oldest waiting jobs until at most ``keep`` wait (the running one is never dropped)."""
        self._pending = deque(item for item in self._pending if not item[1].done())
        waiting = [item for item in self._pending if not item[1].running()]
        for job, future in waiting[: max(0, len(waiting) - keep)]:
            if future.cancel():
                self._counts["dropped"] += 1
                logger.warning("skill queue full (%d): dropped a job of task %s", self.max_queue, job.task_id)

    def _unfinished(self) -> list[Future]:
        with self._lock:
            return [future for _, future in self._pending if not future.done()]

    def _run(self, job: _Job) -> None:
        try:
            self._process(job)
        except Exception as exc:  # a job never fails the worker: training would silently stop getting skills
            logger.exception("skill summarization failed for task %s", job.task_id)
            self._count("errors", reason=f"internal: {exc!r}"[:120])

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued job has been processed; False if ``timeout`` seconds passed first."""
        _, not_done = wait(self._unfinished(), timeout=timeout)
        return not not_done

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker; jobs still waiting are discarded (call :meth:`flush` first to keep them)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
            wait(self._unfinished(), timeout=timeout)  # the running job, if any

    def _drain_with_progress(self, timeout: float) -> bool:
        """:meth:`flush`, showing how many jobs (trajectories, or task groups) are left while it waits."""
        pending = len(self._unfinished())
        if pending == 0:
            return True
        from tqdm.auto import tqdm

        deadline = time.monotonic() + timeout
        with tqdm(total=pending, desc="summarizing skills", unit="job") as bar:
            while time.monotonic() < deadline:
                done = self.flush(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
                bar.update(max(0, pending - len(self._unfinished()) - bar.n))
                if done:
                    return True
        return False

    # -- one job --------------------------------------------------------------------------------------------
    def _count(self, key: str, n: int = 1, reason: str | None = None) -> None:
        with self._lock:
            self._counts[key] += n
            if reason:
                self.failure_reasons[reason] += 1

    def _invoke(self, job: _Job) -> str:
        if job.focus is None:
            return self.summarizer.summarize(job.trajectories)
        if self._focus_aware:
            return self.summarizer.summarize(job.trajectories, focus=job.focus)
        return self.summarizer.summarize([job.focus])  # old interface: the focus alone, so the skill describes it

    def _call(self, job: _Job) -> str:
        """Run the summarizer in its own daemon thread so an overrunning call can be abandoned."""
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["text"] = self._invoke(job)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the worker thread
                box["error"] = exc

        thread = threading.Thread(target=target, name="skill-summarizer-call", daemon=True)
        thread.start()
        thread.join(self.call_timeout)
        if thread.is_alive():
            raise _CallTimeout(f"summarizer call exceeded {self.call_timeout}s")
        if "error" in box:
            raise box["error"]
        return box["text"]

    def _summarize_with_retries(self, job: _Job) -> str | None:
        for attempt in range(self.retries + 1):
            if attempt:
                self._count("retries")
                time.sleep(self.retry_backoff * 2 ** (attempt - 1))
            start = time.monotonic()
            try:
                text = self._call(job)
            except _CallTimeout as exc:
                self._count("timeouts")
                last = str(exc)
                continue
            except SummarizerError as exc:
                last = str(exc)
                if exc.retryable:
                    continue
                break
            except Exception as exc:  # a backend bug or bad input: not worth retrying
                last = f"{type(exc).__name__}: {exc}"
                break
            with self._lock:
                self._latency_sum += time.monotonic() - start
                self._latency_n += 1
            return text
        logger.warning("skill summarizer failed for task %s: %s", job.task_id, last)
        self._count("errors", reason=last[:120])
        return None

    def _process(self, job: _Job) -> None:
        text = self._summarize_with_retries(job)
        if text is None:
            return
        try:
            skill = parse_skill(
                text,
                task_id=job.task_id,
                reward=_skill_reward(job),
                step=job.step,
                summarizer=getattr(self.summarizer, "name", type(self.summarizer).__name__),
                **self.parse_kwargs,
            )
        except SkillParseError as exc:
            logger.info("skill for task %s rejected: %s", job.task_id, exc.reason)
            self._count("parse_failures", reason=exc.reason[:120])
            return
        if self._world()[0] > 1:
            with self._lock:
                self._staged.append(skill)
        else:
            self._store(skill)

    def _store(self, skill: Skill) -> None:
        self._count("added" if self.bank.add(skill) else "duplicates")

    # -- metrics --------------------------------------------------------------------------------------------
    def metrics(self) -> dict[str, float]:
        """Counters since construction (``skills/queued`` and sizes are current values)."""
        stats = self.bank.stats()
        with self._lock:
            c = self._counts
            return {
                "skills/queued": float(sum(not future.done() for _, future in self._pending)),
                "skills/submitted": float(c["submitted"]),
                "skills/added": float(c["added"]),
                "skills/duplicates": float(c["duplicates"]),
                "skills/parse_failures": float(c["parse_failures"]),
                "skills/dropped": float(c["dropped"]),
                "skills/errors": float(c["errors"]),
                "skills/timeouts": float(c["timeouts"]),
                "skills/retries": float(c["retries"]),
                "skills/latency": self._latency_sum / self._latency_n if self._latency_n else 0.0,
                "skills/bank_size": float(stats["skills"]),
                "skills/tasks_with_skills": float(stats["tasks_with_skills"]),
                "skills/evicted": float(stats["evicted"]),
            }

    # -- multi-process synchronisation ----------------------------------------------------------------------
    def sync(self, trajectories: list[Trajectory] | None = None) -> list[Trajectory]:
        """Collective: gather trajectories and bandit feedback to rank 0, add staged skills there, broadcast the
        bank. Returns the trajectories gathered from all ranks on rank 0 (``[]`` elsewhere). Every rank must call
        it; a no-op returning ``trajectories`` in a single process."""
        trajectories = list(trajectories or [])
        world, rank = self._world()
        if world == 1:
            return trajectories
        import torch.distributed as dist

        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, (trajectories, self.bank.drain_deltas()))
        result: list[Trajectory] = []
        if rank == 0:
            for trajs, _ in gathered:
                result.extend(trajs)
            # A (task, skill) selection counts once per window however many ranks hold part of the task's group;
            # rank 0's own feedback is already in its bank, so only the rest is merged.
            combined = combine_rank_deltas([deltas for _, deltas in gathered])
            self.bank.merge_deltas(subtract_deltas(combined, gathered[0][1]))
            with self._lock:
                staged, self._staged = self._staged, []
            for skill in staged:
                self._store(skill)
        state = [self.bank.to_dict() if rank == 0 else None]
        dist.broadcast_object_list(state, src=0)
        if rank != 0:
            self.bank.load_state_dict(state[0])
        return result

    # -- the named points a training loop calls ------------------------------------------------------------------
    def after_step(self, step: int) -> None:
        """After an optimizer step: take the trainer's finished trajectories, synchronise ranks, queue the jobs, and
        (``wait_for_skills`` > 0) wait for them so the next generation batch sees their skills."""
        trajectories = list(self.trainer.pop_finished_trajectories() or [])
        trajectories = self.sync(trajectories)
        if self.is_main_process and trajectories:
            self.submit(trajectories, step=step)
        if self.wait_for_skills > 0:
            if self.is_main_process and not self.flush(self.wait_for_skills):
                logger.warning("skills of step %s still pending after %.0fs", step, self.wait_for_skills)
            self.sync()  # collective: the skills just written reach every rank before the next generation batch

    def finish(self) -> None:
        """At the end of training: drain the queue (with a progress bar), synchronise, stop the worker."""
        if self.is_main_process and not self._drain_with_progress(self.flush_on_train_end):
            logger.warning("skill summarizer still busy after %.0fs at train end: its pending skills are not in the "
                           "saved bank", self.flush_on_train_end)
        self.sync()  # collective: staged skills reach every rank's bank
        self.close()

    # -- checkpoints ----------------------------------------------------------------------------------------
    def save_to_checkpoint(self, folder: str) -> None:
        """Write ``skill_bank.json`` (and the summarizer's memory, if it has any) into ``folder``, atomically;
        main process only."""
        if not self.is_main_process:
            return
        atomic_write_json(Path(folder) / BANK_FILE, self.bank.to_dict())
        state_dict = getattr(self.summarizer, "state_dict", None)
        if callable(state_dict):
            atomic_write_json(Path(folder) / SUMMARIZER_STATE_FILE, state_dict())

    def load_from_checkpoint(self, folder: str) -> bool:
        """Restore the bank (and summarizer memory) from ``folder`` if ``skill_bank.json`` exists there."""
        path = Path(folder) / BANK_FILE
        if not path.is_file():
            return False
        self.bank.load_state_dict(SkillBank.load(path).to_dict())
        summarizer_path = Path(folder) / SUMMARIZER_STATE_FILE
        load_state = getattr(self.summarizer, "load_state_dict", None)
        if summarizer_path.is_file() and callable(load_state):
            import json

            load_state(json.loads(summarizer_path.read_text(encoding="utf-8")))
        return True
