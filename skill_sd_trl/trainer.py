"""`SkillSDTrainer`: TRL's `GRPOTrainer` plus gradient-correct self-distillation from a skill-conditioned teacher.

What it adds to the parent, and where:

- ``_generate_and_score_completions`` (once per generation batch): pick a skill per task from the skill provider,
  sync the teacher, run the parent (rollouts, rewards, advantages), then score the student's *exact* completion ids
  with the teacher under its own prompt (plain prompt ⊕ skill) — one no-grad forward, carried in the batch as
  ``teacher_per_token_logps`` (batch first, so TRL's split/shuffle keeps it aligned). Rewards flow back to the
  provider (UCB statistics) and finished trajectories are queued for the skill summarizer.
- ``compute_loss``: the parent's GRPO loss, untouched, plus ``sdl_coef · L_SDL``. The student log-probs are the
  ones the parent's pass already computed (captured from ``_get_per_token_logps_and_entropies``): no second
  student forward.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections import defaultdict
from typing import Any

import torch
from trl import GRPOTrainer
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import pad

from .atomic import atomic_write, atomic_write_json
from .config import SkillSDConfig
from .losses import masked_mean, sanitize_logps, sdl_per_token
from .prompts import add_context_to_prompt, prompt_text, task_id_of
from .skills.provider import ColumnSkillProvider, SkillProvider, SkillSelection
from .teacher import Teacher
from .trajectory import Trajectory, Turn

logger = logging.getLogger(__name__)

TEACHER_STATE_FILE = "teacher_state.pt"
TEACHER_META_FILE = "teacher_state.json"

#: Loss types whose parent normalizer is the token count of the whole accumulation window.
_GLOBAL_TOKEN_LOSSES = ("dapo", "cispo", "vespo")


class SkillSDTrainer(GRPOTrainer):
    """GRPO + λ · importance-weighted reverse KL to a skill-conditioned, LoRA-synced teacher.

    Args (beyond [`~trl.GRPOTrainer`]'s):
        args ([`SkillSDConfig`]): the configuration.
        skill_provider ([`SkillProvider`], *optional*): where skills come from (a `SkillBank`, or anything with
            `select`/`record_outcome`). Defaults to reading the dataset column `args.skill_column`.
    """

    _tag_names = ["trl", "grpo", "skill-sd"]
    _name = "Skill-SD"
    _paper = {
        "title": "Skill-SD: Skill-Conditioned Self-Distillation for Multi-Turn LLM Agents",
        "id": "2604.10674",
        "citation": (
            "@article{skillsd2026,\n"
            "    title  = {{Skill-Conditioned Self-Distillation for Multi-Turn LLM Agents}},\n"
            "    author = {{The Skill-SD authors}},\n"
            "    year   = 2026,\n"
            "    eprint = {arXiv:2604.10674},\n"
            "}"
        ),
    }

    def __init__(self, model, reward_funcs, args: SkillSDConfig | None = None, *pos, skill_provider=None, **kwargs):
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = SkillSDConfig(f"{name.split('/')[-1]}-Skill-SD")
        if not isinstance(args, SkillSDConfig):
            raise TypeError(
                f"SkillSDTrainer needs a SkillSDConfig, got {type(args).__name__}. Build one with the same fields: "
                "SkillSDConfig(**your_grpo_config.to_dict()) plus the Skill-SD fields."
            )
        if skill_provider is not None and not isinstance(skill_provider, SkillProvider):
            raise TypeError("skill_provider must have select(task_id, example) and record_outcome(task_id, skill_id, rewards).")
        super().__init__(model, reward_funcs, args, *pos, **kwargs)
        self.skill_provider = skill_provider if skill_provider is not None else ColumnSkillProvider(args.skill_column)
        self._check_columns(self.train_dataset)
        self.teacher = Teacher(self.model, args, self.accelerator) if args.needs_teacher else None
        if args.rollout_policy == "teacher" and self.teacher is not None and self.teacher._copy is not None:
            raise ValueError(
                f"rollout_policy='teacher' with teacher_sync_mode={args.teacher_sync_mode!r} needs the teacher to be a "
                "LoRA adapter the generator can switch to: pass a peft_config, or use teacher_sync_mode='dynamic'."
            )
        self._capture_student_logps = False
        self._captured_student_logps: torch.Tensor | None = None
        self._batch_contexts: list[str | None] | None = None
        self._batch_skills: list[SkillSelection | None] | None = None
        self._generation_prompts: list | None = None
        self._finished_trajectories: list[Trajectory] = []
        self.current_batch_rows: list[dict] | None = None
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
        template = (
            self.args.teacher_ground_truth_template
            if self.args.teacher_context == "ground_truth"
            else self.args.teacher_skill_template
        )
        return add_context_to_prompt(prompt, context, template, self.args.teacher_skill_position)

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, torch.Tensor | Any]:
        mode = "train" if self.model.training else "eval"
        cache: dict = {}
        contexts, skills = zip(*(self._context_for(x, cache) for x in inputs), strict=True)
        self._batch_contexts, self._batch_skills = list(contexts), list(skills)
        if self.args.skills_in_student_prompt:  # skill-augmented GRPO baseline: the student sees the skill
            inputs = [{**x, "prompt": self._render(x["prompt"], c)} for x, c in zip(inputs, contexts, strict=True)]
        if self.teacher is not None and mode == "train":
            self.teacher.maybe_sync(self.state.global_step)
        self.current_batch_rows = inputs  # read by multi-turn rollout functions to reset their environments

        output = super()._generate_and_score_completions(inputs)

        if self.teacher is not None:
            teacher_logps = self._teacher_logps(output, mode)
            output["teacher_per_token_logps"] = teacher_logps
            if self.args.rollout_policy == "teacher" and mode == "train":
                # The teacher sampled these tokens: its log-probs are the sampler's (π_old) for every ratio.
                output["old_per_token_logps"] = teacher_logps
        self._after_rewards(inputs, output, mode)
        return output

    def _generate(self, prompts: list):
        self._generation_prompts = prompts  # exactly what the student was prompted with (after env resets)
        teacher_acts = (
            self.teacher is not None and self.args.rollout_policy == "teacher" and self.model.training
        )
        if not teacher_acts:
            result = super()._generate(prompts)
            rollout_prompts = result[5].pop("rollout_prompts", None)  # a rollout_func may extend prompts on reset
            if rollout_prompts is not None:
                self._generation_prompts = rollout_prompts
            return result
        teacher_prompts = [self._render(p, c) for p, c in zip(prompts, self._batch_contexts, strict=True)]
        with self.teacher.activated():
            result = super()._generate(teacher_prompts)
        result[5].pop("rollout_prompts", None)
        # Train the student on its own (plain) prompt followed by the teacher's tokens.
        student_prompt_ids = self._tokenize_prompts(prompts)[0]
        return (student_prompt_ids, *result[1:])

    @torch.no_grad()
    def _teacher_logps(self, output: dict, mode: str) -> torch.Tensor:
        """log π_T of the student's completion ids, under the teacher prompt, aligned with ``completion_ids``."""
        teacher_prompts = [
            self._render(p, c) for p, c in zip(self._generation_prompts, self._batch_contexts, strict=True)
        ]
        prompt_ids = [list(ids) for ids in self._tokenize_prompts(teacher_prompts)[0]]
        completion_ids, completion_mask = output["completion_ids"], output["completion_mask"]
        with self.teacher.activated() as teacher_model, disable_gradient_checkpointing(
            teacher_model, self.args.gradient_checkpointing_kwargs
        ):
            if self.args.teacher_prompt_cache:
                logps = self._teacher_logps_shared_prompts(teacher_model, prompt_ids, completion_ids, completion_mask)
            else:
                logps = self._teacher_logps_padded(teacher_model, prompt_ids, completion_ids, completion_mask, mode)
        mask = completion_mask if "tool_mask" not in output else completion_mask * output["tool_mask"]
        logps = logps.float()
        logps, bad = sanitize_logps(torch.where(mask.bool(), logps, torch.zeros_like(logps)))
        self._nonfinite_teacher_logps += bad
        return logps

    def _teacher_logps_padded(self, model, prompt_ids, completion_ids, completion_mask, mode) -> torch.Tensor:
        """One forward over left-padded teacher prompts + the completions (the parent's own scoring path)."""
        device = self.accelerator.device
        prompts = [torch.tensor(ids) for ids in prompt_ids]
        masks = [torch.ones_like(ids) for ids in prompts]
        prompts = pad(prompts, padding_value=self._tokenizer.pad_token_id, padding_side="left").to(device)
        masks = pad(masks, padding_value=0, padding_side="left").to(device)
        input_ids = torch.cat([prompts, completion_ids], dim=1)
        attention_mask = torch.cat([masks, completion_mask], dim=1)
        batch_size = self.args.per_device_train_batch_size if mode == "train" else self.args.per_device_eval_batch_size
        logps, _, _ = self._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, completion_ids.size(1), batch_size=batch_size
        )
        return logps

    def _teacher_logps_shared_prompts(self, model, prompt_ids, completion_ids, completion_mask) -> torch.Tensor:
        """Encode each distinct teacher prompt once and score its rollouts from that prompt's KV cache.

        The G rollouts of a task share one teacher prompt (task prompt ⊕ skill), which is usually longer than a
        completion: this reads (B/G)·P + B·C tokens instead of B·(P + C), and bounds the forward to one group.
        """
        device = self.accelerator.device
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, ids in enumerate(prompt_ids):
            groups[tuple(ids)].append(i)
        logps = torch.zeros(completion_ids.shape, dtype=torch.float32, device=device)
        length = completion_ids.size(1)
        for prompt, rows in groups.items():
            cache = None
            if len(prompt) >= 2:
                head = torch.tensor([list(prompt[:-1])], device=device)
                cache = model(input_ids=head, use_cache=True, logits_to_keep=1).past_key_values
            if cache is None:  # nothing to cache, or a model that returns no cache here: score the group plainly
                ids = torch.tensor([list(prompt)] * len(rows), device=device)
                seq = torch.cat([ids, completion_ids[rows]], dim=1)
                mask = torch.cat([torch.ones_like(ids), completion_mask[rows]], dim=1)
                logps[rows] = self._get_per_token_logps_and_entropies(model, seq, mask, length)[0].float()
                continue
            cache.batch_repeat_interleave(len(rows))
            # The last prompt token is re-read so that its logits score the first completion token.
            tail = torch.tensor([[prompt[-1]]] * len(rows), device=device)
            seq = torch.cat([tail, completion_ids[rows]], dim=1)
            mask = torch.cat([torch.ones(len(rows), head.size(1) + 1, dtype=completion_mask.dtype, device=device),
                              completion_mask[rows]], dim=1)
            labels = seq.masked_fill(torch.cat([tail.new_ones(tail.shape), completion_mask[rows]], 1) == 0, -100)
            with self.accelerator.autocast():
                out = model(input_ids=seq, attention_mask=mask, past_key_values=cache, labels=labels,
                            fused_lm_head=True)
            logps[rows] = out.log_probs[:, -length:].float()
        return logps

    def _after_rewards(self, inputs: list[dict], output: dict, mode: str) -> None:
        """Skill coverage metric, bandit feedback with the group's rewards, and trajectories for the summarizer.

        Both stay local to this process: in multi-process runs the skill summarizer callback gathers trajectories and
        bandit feedback to the main process and broadcasts the bank, so every rank sees the same bank each step.
        """
        if self.args.teacher_context == "skill" and (self.teacher is not None or self.args.skills_in_student_prompt):
            covered = torch.tensor([float(s is not None) for s in self._batch_skills], device=self.accelerator.device)
            self._metrics[mode]["skills/coverage"].append(self.accelerator.gather(covered).mean().item())
        if mode != "train":
            return
        start = self.accelerator.process_index * len(inputs)
        rewards = self._last_rewards[start : start + len(inputs)].tolist()  # this process's slice
        outcomes = defaultdict(list)
        for i, (example, reward) in enumerate(zip(inputs, rewards, strict=True)):
            traj = self._trajectory(example, output, i)
            traj.reward = float(reward) if reward == reward else 0.0  # NaN (unscorable) counts as 0
            traj.step = self.state.global_step
            self._finished_trajectories.append(traj)
            skill = self._batch_skills[i]
            if skill is not None:
                outcomes[(traj.task_id, skill.skill_id)].append(traj.reward)
        for (task_id, skill_id), values in outcomes.items():
            self.skill_provider.record_outcome(task_id, skill_id, values)

    def _trajectory(self, example: dict, output: dict, index: int) -> Trajectory:
        episode = example.get("episode")
        if isinstance(episode, dict):  # multi-turn rollouts hand over the full episode record
            return Trajectory.from_dict({**episode, "task_id": task_id_of(example, self.args.task_id_column)})
        ids = output["completion_ids"][index][output["completion_mask"][index].bool()]
        return Trajectory(
            task_id=task_id_of(example, self.args.task_id_column),
            env_name=str(example.get("env", "single_turn")),
            task=prompt_text(example["prompt"]),
            turns=[Turn(action=self._tokenizer.decode(ids, skip_special_tokens=True))],
            reward=0.0,
        )

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        self._last_rewards = (rewards_per_func * weights).nansum(dim=1)  # all processes, in process order
        return rewards_per_func

    # ------------------------------------------------------------------------------------------------------------
    # Loss
    # ------------------------------------------------------------------------------------------------------------
    def _get_per_token_logps_and_entropies(self, *args, **kwargs):
        result = super()._get_per_token_logps_and_entropies(*args, **kwargs)
        if self._capture_student_logps:
            self._captured_student_logps = result[0]
        return result

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.teacher is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        self._capture_student_logps = True
        try:
            grpo_loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        finally:
            self._capture_student_logps = False
        student_logps, self._captured_student_logps = self._captured_student_logps, None
        if student_logps is None:
            raise RuntimeError(
                "GRPOTrainer._compute_loss no longer calls _get_per_token_logps_and_entropies; skill-sd-trl's hook "
                "needs updating for this TRL version."
            )
        sdl_loss = self._sdl_loss(student_logps, inputs)
        loss = sdl_loss * self.args.sdl_coef
        if self.args.grpo_coef != 0:
            loss = loss + (grpo_loss if self.args.grpo_coef == 1 else self.args.grpo_coef * grpo_loss)
        else:
            loss = loss + 0.0 * grpo_loss  # keep the parent's graph (and its metrics) without its gradient
        return loss

    def _sdl_loss(self, student_logps: torch.Tensor, inputs: dict) -> torch.Tensor:
        """λ-free L_SDL of a micro-batch, normalized over tokens and for gradient accumulation like the parent."""
        mode = "train" if self.model.training else "eval"
        mask = inputs["completion_mask"]
        if "tool_mask" in inputs:
            mask = mask * inputs["tool_mask"]
        old = inputs.get("old_per_token_logps")
        old = student_logps.detach() if old is None else old
        teacher = inputs["teacher_per_token_logps"]
        per_token = sdl_per_token(
            student_logps, old, teacher,
            is_clip=self.args.sdl_is_clip,
            estimator=self.args.sdl_estimator,
            log_ratio_clamp=self.args.sdl_log_ratio_clamp,
        )
        if "importance_sampling_ratio" in inputs:  # vLLM sampler ≠ trainer: correct to the true sampler
            per_token = per_token * inputs["importance_sampling_ratio"].detach()
        mask_f = mask.to(per_token.dtype)
        accumulation = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        if self.loss_type in _GLOBAL_TOKEN_LOSSES:
            normalizer = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
            if mode == "train":
                normalizer = normalizer * accumulation / self.args.steps_per_generation
        else:
            normalizer = mask_f.sum().clamp(min=1.0) * accumulation
        loss = (per_token * mask_f).sum() / normalizer
        self._log_sdl_metrics(mode, per_token.detach(), student_logps.detach(), old, teacher, mask_f)
        return loss.to(student_logps.dtype) if student_logps.dtype == torch.float64 else loss

    def _log_sdl_metrics(self, mode, per_token, student_logps, old, teacher, mask) -> None:
        def global_mean(x):
            totals = self.accelerator.reduce(torch.stack([(x * mask).sum(), mask.sum()]).float(), reduction="sum")
            return (totals[0] / totals[1].clamp(min=1.0)).item()

        log_rho = (student_logps.float() - old.float()).clamp(-self.args.sdl_log_ratio_clamp, self.args.sdl_log_ratio_clamp)
        rho = torch.exp(log_rho)
        rho_max = (rho * mask).max() if mask.any() else torch.zeros((), device=rho.device)
        metrics = self._metrics[mode]
        metrics["self_distillation/sdl"].append(global_mean(per_token))
        metrics["self_distillation/weighted_sdl"].append(self.args.sdl_coef * global_mean(per_token))
        metrics["teacher/logp_gap"].append(global_mean(teacher.float() - student_logps.float()))
        metrics["self_distillation/is_ratio_mean"].append(global_mean(rho))
        metrics["self_distillation/is_ratio_max"].append(self.accelerator.gather(rho_max.reshape(1)).max().item())
        metrics["teacher/sync_count"].append(float(self.teacher.sync_count))
        metrics["teacher/nonfinite_logps"].append(float(self._nonfinite_teacher_logps))

    # ------------------------------------------------------------------------------------------------------------
    # Checkpoints: teacher weights and callback state (skill bank) travel with every save and are restored on resume
    # ------------------------------------------------------------------------------------------------------------
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call)
        output_dir = output_dir or self.args.output_dir
        if self.teacher is not None and self.teacher.is_peft and self.args.should_save:
            # PEFT saves every adapter; the teacher's lives in teacher_state.pt instead, so the folder holds one model.
            shutil.rmtree(os.path.join(output_dir, self.args.teacher_adapter_name), ignore_errors=True)
        if self.teacher is not None and self.args.should_save:
            state = {k: v.cpu() for k, v in self.teacher.state_dict().items()}
            atomic_write(os.path.join(output_dir, TEACHER_STATE_FILE), lambda f: torch.save(state, f), binary=True)
            meta = {"sync_count": self.teacher.sync_count, "last_sync_step": self.teacher.last_sync_step,
                    "mode": self.teacher.mode}
            atomic_write_json(os.path.join(output_dir, TEACHER_META_FILE), meta)
        for callback in self.callback_handler.callbacks:
            if hasattr(callback, "save_to_checkpoint"):
                callback.save_to_checkpoint(output_dir)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        self.restore_extra_state(checkpoint)

    def restore_extra_state(self, checkpoint: str) -> None:
        """Restore the teacher and every callback's state (e.g. the skill bank) from a checkpoint folder."""
        weights = os.path.join(checkpoint, TEACHER_STATE_FILE)
        if self.teacher is not None and os.path.exists(weights):
            self.teacher.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            with open(os.path.join(checkpoint, TEACHER_META_FILE), encoding="utf-8") as f:
                meta = json.load(f)
            self.teacher.sync_count = meta["sync_count"]
            self.teacher.last_sync_step = meta["last_sync_step"]
        for callback in self.callback_handler.callbacks:
            if hasattr(callback, "load_from_checkpoint"):
                callback.load_from_checkpoint(checkpoint)

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
        atomic_write(path, lambda f: f.write(card.rstrip() + "\n\n" + self.model_card_section() + "\n"))

    def model_card_section(self) -> str:
        """A Markdown section: method, λ, teacher, environment, and the last logged metrics."""
        args = self.args
        envs = sorted({str(e) for e in self.train_dataset["env"]}) if "env" in (self.train_dataset.column_names or []) else []
        lines = [
            "## Skill-SD training",
            "",
            "Trained with skill-sd-trl's `SkillSDTrainer`: GRPO plus "
            "λ · importance-weighted reverse KL to a skill-conditioned teacher (a LoRA-synced copy of the student; "
            "skills never enter the student's prompt).",
            "",
            "| setting | value |",
            "|---|---|",
            f"| λ (`sdl_coef`) | {args.sdl_coef} |",
            f"| GRPO weight (`grpo_coef`) | {args.grpo_coef} |",
            f"| teacher sync | {args.teacher_sync_mode} (every {args.teacher_sync_steps} step(s)) |",
            f"| teacher context | {args.teacher_context} |",
            f"| rollout policy | {args.rollout_policy} |",
            f"| skills in student prompt | {args.skills_in_student_prompt} |",
            f"| environment | {', '.join(envs) or 'n/a'} |",
            f"| loss type | {args.loss_type} |",
            f"| generations per prompt | {args.num_generations} |",
        ]
        last: dict[str, float] = {}
        for entry in self.state.log_history:
            for key, value in entry.items():
                if isinstance(value, (int, float)) and (key.startswith(("env/", "self_distillation/", "teacher/", "skills/"))
                                                        or key in ("reward", "loss")):
                    last[key] = value
        if last:
            lines += ["", "Last logged training metrics:", "", "| metric | value |", "|---|---|"]
            lines += [f"| `{k}` | {v:.4g} |" for k, v in sorted(last.items()) if math.isfinite(v)]
        return "\n".join(lines)

    # ------------------------------------------------------------------------------------------------------------
    # Logging: callbacks with `metrics()` (the skill summarizer) join the logged row before it enters the history
    # ------------------------------------------------------------------------------------------------------------
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.is_world_process_zero():
            for callback in self.callback_handler.callbacks:
                metrics = getattr(callback, "metrics", None)
                if callable(metrics) and getattr(callback, "log_metrics", True):
                    logs.update(metrics())
        super().log(logs, start_time)
