"""`SkillSDTrainer`: TRL's `GRPOTrainer` plus gradient-correct self-distillation from a skill-conditioned teacher.

What it adds to the parent, and where:

- ``_generate_and_score_completions`` (once per generation batch): pick a skill per task from the skill provider,
  sync the teacher, run the parent (rollouts, rewards, advantages), then score the student's *exact* completion ids
  with the teacher under its own prompt (plain prompt ⊕ skill) — one no-grad forward, carried in the batch as
  ``teacher_per_token_logps`` (batch first, so TRL's split/shuffle keeps it aligned). Rewards flow back to the
  provider (UCB statistics) and finished trajectories are queued for the skill summarizer.
- ``compute_loss``: the parent's GRPO loss, untouched, plus ``sdl_coef · L_SDL``. The student log-probs are the
  ones the parent's pass already computed (captured from ``_get_per_token_logps_and_entropies``): no second
  student forward. The dense estimator makes that one pass (and the teacher's) keep logits (:mod:`.dense`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections import defaultdict
from typing import Any

import torch
from accelerate.utils import gather_object
from trl import GRPOConfig, GRPOTrainer

from .. import trl_private
from ..atomic import atomic_write
from ..rollout.multi_turn import episode_metrics
from ..rollout.prompts import prompt_text, task_id_of
from ..skills.provider import ColumnSkillProvider, SkillProvider, SkillSelection
from ..skills.trajectory import Trajectory, Turn
from .batch_plan import BatchPlan, render_context
from .config import SkillSDConfig
from .dense import StudentDense, student_dense, teacher_batch_keys, teacher_keys_for_rows, teacher_reduce, vocab_size
from .losses import sanitize_logps
from .model_card import PAPER, skill_sd_section
from .sdl_metrics import rollout_success, term_gradient_metrics
from .sdl_term import sdl_loss
from .shared_prompts import shared_prompt_pass
from .teacher import TEACHER_META_FILE, TEACHER_STATE_FILE, Teacher, build_teacher  # noqa: F401  (re-exported)
from .teacher_scoring import score_teacher

logger = logging.getLogger(__name__)


class SkillSDTrainer(GRPOTrainer):
    """GRPO + λ · importance-weighted reverse KL to a skill-conditioned, LoRA-synced teacher.

    Args (beyond [`~trl.GRPOTrainer`]'s):
        args ([`SkillSDConfig`]): the configuration.
        skill_provider ([`SkillProvider`], *optional*): where skills come from (a `SkillBank`, or anything with
            `select`/`record_outcome`). Defaults to reading the dataset column `args.skill_column`.

    The teacher is built only when some row can carry a teacher signal (:func:`~.teacher.build_teacher`): a plain
    GRPO dataset without a skill column trains exactly as `GRPOTrainer`, with no teacher adapter or copy.
    """

    _tag_names = ["trl", "grpo", "skill-sd"]
    _name = "Skill-SD"
    _paper = PAPER  # TRL cites it in the model card

    #: The skill pipeline (the summarizer callback) that attached itself: its checkpoint files and metrics travel
    #: with the trainer's, at the named points save_model / restore_extra_state / log.
    skill_pipeline = None

    # Class-level defaults: a trainer shell made without __init__ (as TRL's own dispatch tests build one) behaves like
    # the parent wherever Skill-SD adds nothing.
    teacher: Teacher | None = None
    _batch: BatchPlan | None = None
    _capture_student_logps = False
    _captured_student_logps: torch.Tensor | None = None
    _dense: StudentDense | None = None  # the dense estimator's student pass of the current loss computation

    def __init__(self, model, reward_funcs=None, args: GRPOConfig | None = None, *pos, skill_provider=None, **kwargs):
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = SkillSDConfig(f"{name.split('/')[-1]}-Skill-SD")
        elif not isinstance(args, SkillSDConfig):
            if not isinstance(args, GRPOConfig):
                raise TypeError(f"args must be a SkillSDConfig or a GRPOConfig, got {type(args).__name__}.")
            args = SkillSDConfig.from_grpo_config(args)
        if skill_provider is not None and not isinstance(skill_provider, SkillProvider):
            raise TypeError("skill_provider must have select(task_id, example) and record_outcome(task_id, skill_id, rewards).")
        super().__init__(model, reward_funcs, args, *pos, **kwargs)
        self.skill_provider = skill_provider if skill_provider is not None else ColumnSkillProvider(args.skill_column)
        self._check_columns(self.train_dataset)
        self.teacher = build_teacher(self.model, args, self.accelerator, self.skill_provider,
                                     getattr(self.train_dataset, "column_names", None))
        if args.rollout_policy == "teacher" and self.teacher is not None and self.teacher._copy is not None:
            raise ValueError(
                f"rollout_policy='teacher' with teacher_sync_mode={args.teacher_sync_mode!r} needs the teacher to be a "
                "LoRA adapter the generator can switch to: pass a peft_config, or use teacher_sync_mode='dynamic'."
            )
        self._finished_trajectories: list[Trajectory] = []
        self._nonfinite_teacher_logps = 0

    # ------------------------------------------------------------------------------------------------------------
    # Set-up helpers
    # ------------------------------------------------------------------------------------------------------------
    def _check_columns(self, dataset) -> None:
        columns = getattr(dataset, "column_names", None)
        if not columns:
            return
        if self.args.teacher_context == "ground_truth" and self.args.ground_truth_column not in columns:
            raise ValueError(
                f"teacher_context='ground_truth' reads the dataset column {self.args.ground_truth_column!r}, which the "
                f"training dataset lacks (columns: {columns}). Add it or set ground_truth_column."
            )

    def attach_skill_pipeline(self, pipeline) -> None:
        """Called by the summarizer callback: ``pipeline`` has ``save_to_checkpoint``, ``load_from_checkpoint`` and
        ``metrics``."""
        self.skill_pipeline = pipeline

    def pop_finished_trajectories(self) -> list[Trajectory]:
        """Hand over (and forget) the episodes finished since the last call; used by the skill summarizer."""
        finished, self._finished_trajectories = self._finished_trajectories, []
        return finished

    # ------------------------------------------------------------------------------------------------------------
    # Generation batch: skills, teacher sync, teacher scoring
    # ------------------------------------------------------------------------------------------------------------
    def _context_for(self, example: dict, cache: dict) -> tuple[str | None, SkillSelection | None]:
        """The privileged context (text) of one example and the skill it came from (None for ground truth)."""
        kind = self.args.teacher_context
        if kind == "none":
            return None, None
        if kind == "ground_truth":
            value = example.get(self.args.ground_truth_column)
            return (None if value is None else str(value)), None
        if not self.model.training:
            # Evaluation measures the agent as deployed (no skills anywhere) and leaves the bandit statistics alone.
            return None, None
        task_id = task_id_of(example, self.args.task_id_column)
        if task_id not in cache:  # one selection per task per generation batch: the whole group shares the skill
            cache[task_id] = self.skill_provider.select(task_id, example)
        selection = cache[task_id]
        return (selection.text if selection else None), selection

    def _render(self, prompt, context: str | None):
        return render_context(prompt, context, self.args, self.processing_class)

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, torch.Tensor | Any]:
        mode = "train" if self.model.training else "eval"
        plan = BatchPlan.make(inputs, self._context_for, self._render, self.args.skills_in_student_prompt)
        parent_inputs = inputs
        if self.args.skills_in_student_prompt:  # the student sees the skill
            parent_inputs = [{**x, "prompt": p} for x, p in zip(inputs, plan.parent_prompts, strict=True)]
        if self.teacher is not None and mode == "train":
            self.teacher.maybe_sync(self.state.global_step)
        plan.rows = parent_inputs  # a row-aware rollout resets each environment with its row
        self._batch = plan  # read by _generate, which the parent calls in between
        try:
            output = super()._generate_and_score_completions(parent_inputs)
        finally:
            self._batch = None
        if self.teacher is not None:
            self._add_teacher_logps(output, plan, mode)
            if "teacher_per_token_logps" in output and (success := rollout_success(inputs)) is not None:
                output["rollout_success"] = success.to(output["completion_ids"].device)
        self._after_rewards(inputs, output, mode, plan)
        return output

    def _generate(self, prompts: list):
        """The parent's sampling, plus what Skill-SD needs to know about the prompts actually used.

        ``prompts`` are the parent's prompts after any environment ``reset()`` text was appended (TRL's
        ``environment_factory``); a row-aware rollout (one with ``bind(rows)``, like ``MultiTurnRollout``) is bound
        to the batch's rows and may append more, which it reports as ``prompts``. The student's prompt is the plain
        task with all of that reset text, never a skill; the teacher's prompt is the student's plus the context — or,
        when the teacher acts (off-policy ablation), exactly the prompt it sampled under.
        """
        plan = self._batch
        if plan is None:  # not inside a Skill-SD generation batch: the parent, unchanged
            return super()._generate(prompts)
        teacher_acts = self.teacher is not None and self.args.rollout_policy == "teacher" and self.model.training
        sent = [self._render(p, c) for p, c in zip(prompts, plan.contexts, strict=True)] if teacher_acts else prompts
        rollout = trl_private.rollout_func(self)
        played = rollout.bind(plan.rows) if hasattr(rollout, "bind") else None
        with (trl_private.rollout_func_swapped(self, played or rollout),  # the parent calls rollout_func(prompts, self)
              self.teacher.activated() if teacher_acts else contextlib.nullcontext()):
            result = super()._generate(sent)
        sampled = sent
        if played is not None:
            sampled = played.prompts
            gather = gather_object if self.accelerator.num_processes > 1 else None
            mode = "train" if self.model.training else "eval"
            trl_private.log_metrics(self, mode, episode_metrics(played.records, played.stop_reasons, gather))
        plan.settle(prompts, sent, sampled, teacher_acts, self.args.skills_in_student_prompt, self._render)
        if not teacher_acts:
            return result
        # Train the student on its own plain prompt (with the same reset text) followed by the teacher's tokens.
        return (trl_private.tokenize_prompts(self, plan.student_prompts), *result[1:])

    def _add_teacher_logps(self, output: dict, plan: BatchPlan, mode: str) -> None:
        scored = plan.scored_rows(self.args.teacher_context == "none"
                                  or (self.args.rollout_policy == "teacher" and mode == "train"))
        total = self.accelerator.gather(torch.tensor([float(sum(scored))], device=self.accelerator.device)).sum()
        if total.item() == 0:  # no rank has a teacher signal: this batch is exactly GRPO
            return
        rows = [i for i, s in enumerate(scored) if s]
        logps = torch.zeros(output["completion_ids"].shape, dtype=torch.float32, device=self.accelerator.device)
        dense = {}
        if rows:
            sub = {k: output[k][rows] for k in ("completion_ids", "completion_mask", "tool_mask") if k in output}
            scores = self._teacher_logps(sub, [plan.teacher_prompts[i] for i in rows], mode)
            if isinstance(scores, dict):  # the dense estimator: the teacher's support comes along
                scores, dense = scores.pop("teacher_per_token_logps"), scores
            logps[rows] = scores
        output["teacher_per_token_logps"] = logps
        if self.args.sdl_estimator == "dense":
            output.update(teacher_keys_for_rows(dense, rows, logps.shape, self.args.sdl_support_size,
                                                vocab_size(self.model), logps.device))
        output["teacher_row_mask"] = torch.tensor(scored, dtype=torch.float32, device=logps.device)
        if self.args.rollout_policy == "teacher" and mode == "train":
            # The teacher sampled these tokens: its log-probs are the sampler's (π_old) for every ratio.
            output["old_per_token_logps"] = logps

    @torch.no_grad()
    def _teacher_logps(self, output: dict, teacher_prompts: list, mode: str) -> torch.Tensor | dict:
        """log π_T of ``output``'s completion ids under ``teacher_prompts``, aligned with ``completion_ids``; for the
        dense estimator a dict of batch keys: those log-probs and the teacher's support (:mod:`.dense`)."""
        prompt_ids = [list(ids) for ids in trl_private.tokenize_prompts(self, teacher_prompts)]
        completion_ids, completion_mask = output["completion_ids"], output["completion_mask"]
        batch_size = self.args.per_device_train_batch_size if mode == "train" else self.args.per_device_eval_batch_size
        dense = (teacher_reduce(self.args.sdl_support_size, self.args.temperature)
                 if self.args.sdl_estimator == "dense" else None)
        with self.teacher.activated() as teacher_model, trl_private.no_gradient_checkpointing(
            teacher_model, self.args.gradient_checkpointing_kwargs
        ):
            logps = score_teacher(teacher_model, prompt_ids, completion_ids, completion_mask,
                                  trl_private.parent_logps_pass(self), self.accelerator.autocast,
                                  trl_private.pad_token_id(self), batch_size, self.args.teacher_prompt_cache, dense)
        mask = completion_mask if "tool_mask" not in output else completion_mask * output["tool_mask"]
        if dense is not None:
            keys, bad = teacher_batch_keys(logps, mask)
            self._nonfinite_teacher_logps += bad
            return keys
        logps, bad = sanitize_logps(torch.where(mask.bool(), logps.float(), torch.zeros_like(logps, dtype=torch.float)))
        self._nonfinite_teacher_logps += bad
        return logps

    def _after_rewards(self, inputs: list[dict], output: dict, mode: str, plan: BatchPlan) -> None:
        """Skill coverage metric, bandit feedback with the group's rewards, and trajectories for the summarizer.

        Both stay local to this process: in multi-process runs the skill summarizer callback gathers trajectories and
        bandit feedback to the main process and broadcasts the bank, so every rank sees the same bank each step.
        """
        if self.args.teacher_context == "skill" and (self.teacher is not None or self.args.skills_in_student_prompt):
            covered = torch.tensor([float(s is not None) for s in plan.skills], device=self.accelerator.device)
            trl_private.log_metrics(self, mode, {"skills/coverage": self.accelerator.gather(covered).mean().item()})
        if mode != "train":
            return
        start = self.accelerator.process_index * len(inputs)
        rewards = self._last_rewards[start : start + len(inputs)].tolist()  # this process's slice
        outcomes = defaultdict(list)
        for i, (example, reward) in enumerate(zip(inputs, rewards, strict=True)):
            # The summarizer describes the task as the student saw it: the plain prompt, never one holding a skill.
            task = prompt_text(plan.student_prompts[i] if plan.student_prompts else plan.plain_prompts[i])
            traj = self._trajectory(example, output, i, task)
            traj.reward = float(reward) if reward == reward else 0.0  # NaN (unscorable) counts as 0
            traj.step = self.state.global_step
            self._finished_trajectories.append(traj)
            skill = plan.skills[i]
            if skill is not None:
                outcomes[(traj.task_id, skill.skill_id)].append(traj.reward)
        for (task_id, skill_id), values in outcomes.items():
            self.skill_provider.record_outcome(task_id, skill_id, values)

    def _trajectory(self, example: dict, output: dict, index: int, task: str) -> Trajectory:
        task_id = task_id_of(example, self.args.task_id_column)
        episode = example.get("episode")
        if isinstance(episode, dict):  # multi-turn rollouts hand over the full episode record
            return Trajectory.from_dict({**episode, "task_id": task_id, "task": task})
        ids = output["completion_ids"][index][output["completion_mask"][index].bool()]
        return Trajectory(
            task_id=task_id,
            env_name=str(example.get("env", "single_turn")),
            task=task,
            turns=[Turn(action=trl_private.decode(self, ids))],
            reward=0.0,
        )

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._last_rewards = trl_private.total_rewards(self, rewards_per_func)  # all processes, in process order
        return rewards_per_func

    # ------------------------------------------------------------------------------------------------------------
    # Loss
    # ------------------------------------------------------------------------------------------------------------
    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **multimodal):
        result = None  # the group's prompt encoded once when it can be (text only), else the parent's padded pass
        dense = self._dense if self._capture_student_logps else None  # logits kept: the dense estimator's support
        if dense is not None and any(v is not None for v in multimodal.values()):
            raise ValueError("sdl_estimator='dense' scores text-only models; use sdl_estimator='rho_k3' here.")
        if self.args.student_prompt_cache and not compute_aux_loss and all(v is None for v in multimodal.values()):
            result = shared_prompt_pass(model, input_ids, attention_mask, logits_to_keep, compute_entropy,
                                        self.accelerator.autocast, reduce=dense and dense.reduce)
            result = dense.take(result) if dense is not None else result
        if result is None and dense is not None:
            result = dense.padded_pass(model, input_ids, attention_mask, logits_to_keep, batch_size, compute_aux_loss,
                                       self.accelerator.autocast)
        if result is None:
            result = super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep,
                                                                batch_size, compute_entropy, compute_aux_loss,
                                                                **multimodal)
        if self._capture_student_logps:
            self._captured_student_logps = result[0]
        return result

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.teacher is None or "teacher_per_token_logps" not in inputs:  # no teacher signal: exactly GRPO
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        self._capture_student_logps = True
        self._dense = student_dense(inputs, self.args) if self.args.sdl_estimator == "dense" else None
        try:
            grpo_loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        finally:
            self._capture_student_logps, dense, self._dense = False, self._dense, None
        student_logps, self._captured_student_logps = self._captured_student_logps, None
        if student_logps is None:
            raise RuntimeError("GRPOTrainer._compute_loss no longer calls _get_per_token_logps_and_entropies; "
                               "skill-sd-trl's hook needs updating for this TRL version.")
        sdl_term = self._sdl_loss(student_logps, inputs, dense and dense.support_logps) * self.args.sdl_coef
        # grpo_coef = 0 (vanilla OPD) keeps the parent's graph and metrics, without its gradient
        grpo_term = grpo_loss if self.args.grpo_coef == 1 else self.args.grpo_coef * grpo_loss
        if self.args.log_loss_grad_norms and model.training:  # a diagnostic: two extra backward passes
            trl_private.log_metrics(self, "train", term_gradient_metrics(model.parameters(), grpo_term, sdl_term))
        return sdl_term + grpo_term

    def _sdl_loss(self, student_logps: torch.Tensor, inputs: dict, support_logps: torch.Tensor | None = None):
        """λ-free L_SDL of a micro-batch (:func:`~.sdl_term.sdl_loss`), reduced per ``sdl_reduction`` and normalized
        for gradient accumulation like the parent (:func:`~skill_sd_trl.trl_private.sdl_normalizer`)."""
        mode = "train" if self.model.training else "eval"
        loss, logged = sdl_loss(student_logps, inputs, self.args, self.accelerator,
                                lambda tokens, rows: trl_private.sdl_normalizer(self, inputs, tokens, mode, rows),
                                support_logps)
        logged["teacher/sync_count"] = float(self.teacher.sync_count)
        logged["teacher/nonfinite_logps"] = float(self._nonfinite_teacher_logps)
        trl_private.log_metrics(self, mode, logged)
        return loss

    # ------------------------------------------------------------------------------------------------------------
    # Checkpoints: teacher weights and callback state (skill bank) travel with every save and are restored on resume
    # ------------------------------------------------------------------------------------------------------------
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call)
        output_dir = output_dir or self.args.output_dir
        if self.teacher is not None and self.teacher.is_peft and self.args.should_save:
            # PEFT saves every adapter; the teacher's lives in TEACHER_STATE_FILE instead, so the folder holds one model.
            shutil.rmtree(os.path.join(output_dir, self.args.teacher_adapter_name), ignore_errors=True)
        if self.teacher is not None and self.args.should_save:
            self.teacher.save(output_dir)
        if self.skill_pipeline is not None:
            self.skill_pipeline.save_to_checkpoint(output_dir)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        self.restore_extra_state(checkpoint)

    def restore_extra_state(self, checkpoint: str) -> None:
        """Restore the teacher and the skill pipeline's state (the skill bank) from a checkpoint folder."""
        if self.teacher is not None:
            self.teacher.restore(checkpoint)
        if self.skill_pipeline is not None:
            self.skill_pipeline.load_from_checkpoint(checkpoint)

    # ------------------------------------------------------------------------------------------------------------
    # Model card: TRL's card plus what a reader needs to reproduce a Skill-SD run
    # ------------------------------------------------------------------------------------------------------------
    def create_model_card(self, model_name=None, dataset_name=None, tags=None):
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        if not self.is_world_process_zero():
            return
        path = os.path.join(self.args.output_dir, "README.md")
        if not os.path.exists(path):
            return
        with open(path, encoding="utf-8") as f:
            card = f.read()
        section = skill_sd_section(self.args, self.train_dataset, self.state.log_history)
        atomic_write(path, lambda f: f.write(card.rstrip() + "\n\n" + section + "\n"))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        pipeline = self.skill_pipeline
        if pipeline is not None and getattr(pipeline, "log_metrics", True) and self.is_world_process_zero():
            logs.update(pipeline.metrics())  # into the row before it enters the log history
        super().log(logs, start_time)
