"""The teacher: a LoRA-synced copy of the student (or, without PEFT, the live/frozen weights).

With PEFT the teacher is a second adapter (``args.teacher_adapter_name``) on the student's own ``PeftModel``: the
base weights are shared, so the teacher costs only adapter-sized memory. Its weights follow the trained adapter
according to the sync mode:

- ``dynamic``: copied from the trained adapter before every generation batch (every ``teacher_sync_steps`` steps);
- ``frozen``: the initial adapter, never updated;
- ``ema``: ``teacher ← (1 − r)·teacher + r·student`` at each sync.

Without PEFT, ``dynamic`` reuses the live weights under ``torch.no_grad`` (no copy at all), while ``frozen`` and
``ema`` keep one full frozen copy of the model: **this doubles the weight memory** (not the optimizer state) and is
refused for sharded models (DeepSpeed ZeRO-3 / FSDP), which must use PEFT instead.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os

import torch
from accelerate.utils import DistributedType, is_peft_model
from safetensors.torch import load_file as load_safetensors
from safetensors.torch import save as save_safetensors

from ..atomic import atomic_write, atomic_write_json
from ..skills.provider import ColumnSkillProvider
from ..trl_private import refresh_fused_lm_head

logger = logging.getLogger(__name__)

TEACHER_STATE_FILE = "teacher_state.safetensors"
TEACHER_META_FILE = "teacher_state.json"


def build_teacher(model, args, accelerator, skill_provider, columns: list[str] | None) -> Teacher | None:
    """The teacher, or None when no row of the run can give it a signal: then it would cost an adapter (or a full
    copy of the model) and a forward per batch for nothing, and the run is exactly GRPO. ``columns``: the training
    dataset's (None when unknown, e.g. an iterable dataset: the teacher is then built)."""
    if not args.needs_teacher:
        return None
    reason = _no_signal_reason(args, skill_provider, columns, is_peft_model(model))
    if reason is not None:
        logger.warning("No teacher is built, so L_SDL is 0 and this run is GRPO: %s.", reason)
        return None
    return Teacher(model, args, accelerator)


def _no_signal_reason(args, skill_provider, columns: list[str] | None, is_peft: bool) -> str | None:
    """Why no row can carry a teacher signal, or None when some row can."""
    if args.rollout_policy == "teacher" or args.teacher_context == "ground_truth":
        return None  # the teacher samples the rollouts; the ground-truth column was checked to exist
    if args.teacher_context == "none":
        # Same prompt as the student: only a teacher with weights of its own (frozen, EMA, or an adapter synced less
        # often than every step) differs from the student. A dynamic one scores exactly the sampler's log-probs.
        if args.teacher_sync_mode != "dynamic" or (is_peft and args.teacher_sync_steps > 1):
            return None
        return ("teacher_context='none' with teacher_sync_mode='dynamic' makes the teacher the student itself; use "
                "'frozen' or 'ema', or a context")
    if getattr(skill_provider, "provides_skills", True) is False:
        return "the skill provider never provides a skill (skill_source='none')"
    if isinstance(skill_provider, ColumnSkillProvider) and columns is not None and skill_provider.column not in columns:
        return (f"teacher_context='skill' reads skills from the dataset column {skill_provider.column!r}, which the "
                f"training dataset lacks; add it, set skill_column, or pass a skill_provider (a SkillBank)")
    return None


class Teacher:
    """Owns the teacher's weights and the context in which a forward pass runs as the teacher."""

    def __init__(self, model, args, accelerator=None):
        self.model = model  # the (unwrapped) student model the trainer optimizes
        self.mode = args.teacher_sync_mode
        self.sync_steps = args.teacher_sync_steps
        self.ema_rate = args.teacher_ema_rate
        self.adapter_name = args.teacher_adapter_name
        self.sync_count = 0
        self.last_sync_step: int | None = None
        self.is_peft = is_peft_model(model)
        self._copy = None
        if self.is_peft:
            self.student_adapter = model.active_adapter
            if self.adapter_name == self.student_adapter:
                raise ValueError(
                    f"teacher_adapter_name={self.adapter_name!r} is the trained adapter's name; choose another name."
                )
            self._add_teacher_adapter()
        elif self.mode in ("frozen", "ema"):
            distributed = getattr(accelerator, "distributed_type", None)
            if distributed in (DistributedType.DEEPSPEED, DistributedType.FSDP):
                raise ValueError(
                    f"teacher_sync_mode={self.mode!r} without PEFT keeps a full copy of the model, which cannot be "
                    f"made of a sharded ({distributed}) model. Pass a peft_config (LoRA): the teacher is then a second "
                    "adapter."
                )
            self._copy = copy.deepcopy(model).eval()
            self._copy.requires_grad_(False)
            refresh_fused_lm_head(self._copy, args.temperature, args.cast_lm_head_to_fp32)

    # -- weights ---------------------------------------------------------------------------------------------
    def _pairs(self):
        """(student parameter, teacher parameter) pairs of the two adapters, matched by name."""
        student_tag, teacher_tag = f".{self.student_adapter}.", f".{self.adapter_name}."
        params = dict(self.model.named_parameters())
        pairs = []
        for name, param in params.items():
            if teacher_tag in name:
                source = params.get(name.replace(teacher_tag, student_tag))
                if source is None:
                    raise RuntimeError(f"teacher adapter parameter {name} has no student counterpart")
                pairs.append((source, param))
        if not pairs:
            raise RuntimeError(f"adapter {self.adapter_name!r} has no parameters; is the model a LoRA PeftModel?")
        return pairs

    def _add_teacher_adapter(self):
        config = copy.deepcopy(self.model.peft_config[self.student_adapter])
        # The teacher only scores (and, off-policy, samples): it never trains, so it gets no dropout of its own even
        # when the student's LoRA has some (TRL's disable_dropout ran before this adapter existed).
        if hasattr(config, "lora_dropout"):
            config.lora_dropout = 0.0
        # Creating an adapter draws random init values: fork the RNG so the run's sampling stream is unchanged.
        with torch.random.fork_rng(devices=[]):
            self.model.add_adapter(self.adapter_name, config)
        for _, teacher_param in self._pairs():
            teacher_param.requires_grad_(False)
        self._copy_weights(rate=1.0)
        self.sync_count = 0

    @torch.no_grad()
    def _copy_weights(self, rate: float):
        if self.is_peft:
            pairs = self._pairs()
        else:
            pairs = list(zip(self.model.parameters(), self._copy.parameters(), strict=True))
        with _gathered([p for pair in pairs for p in pair]):
            for source, target in pairs:
                # Same-shaped tensors (or identically sharded FSDP2 DTensors): an element-wise update is exact.
                target.lerp_(source.detach().to(target.dtype), rate)

    def sync(self, step: int | None = None) -> None:
        """Apply the sync mode once (no-op for ``frozen`` and for the live full-model teacher)."""
        if self.mode == "frozen" or (not self.is_peft and self.mode == "dynamic"):
            return
        self._copy_weights(rate=1.0 if self.mode == "dynamic" else self.ema_rate)
        self.sync_count += 1
        self.last_sync_step = step

    def maybe_sync(self, step: int) -> bool:
        """Sync if ``teacher_sync_steps`` optimizer steps have passed since the last sync (or never synced)."""
        if self.mode == "frozen":
            return False
        if self.last_sync_step is not None and step - self.last_sync_step < self.sync_steps:
            return False
        if not self.is_peft and self.mode == "dynamic":
            # The live weights *are* the latest student: count the (free) sync for the metric.
            self.sync_count += 1
            self.last_sync_step = step
            return True
        self.sync(step)
        return True

    # -- forward -----------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def activated(self):
        """Yield the module to run as the teacher, deterministic (no dropout or other train-mode behaviour); restores
        the student's active adapter, trainable flags and train/eval modes on exit."""
        if not self.is_peft:
            module = self._copy if self._copy is not None else self.model
            with _deterministic(module):
                yield module
            return
        flags = {name: p.requires_grad for name, p in self.model.named_parameters()}
        previous = self.model.active_adapter
        self.model.set_adapter(self.adapter_name)
        try:
            with _deterministic(self.model):
                yield self.model
        finally:
            self.model.set_adapter(previous)
            for name, param in self.model.named_parameters():
                if param.requires_grad != flags[name]:
                    param.requires_grad_(flags[name])

    @property
    def owns_weights(self) -> bool:
        """False for the live full-model teacher (``dynamic`` without PEFT): its weights are the student's own."""
        return self.is_peft or self._copy is not None

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The teacher's own weights (adapter tensors, or the full copy), for checkpoints and tests."""
        if self.is_peft:
            tag = f".{self.adapter_name}."
            return {n: p.detach().clone() for n, p in self.model.named_parameters() if tag in n}
        module = self._copy if self._copy is not None else self.model
        return {n: p.detach().clone() for n, p in module.named_parameters()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        module = self.model if (self.is_peft or self._copy is None) else self._copy
        params = dict(module.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)

    # -- checkpoints ----------------------------------------------------------------------------------------
    def save(self, folder: str) -> None:
        """Write the teacher into a checkpoint folder: its weights as safetensors (none for the live full-model
        teacher: it *is* the saved model) and its sync counters, atomically."""
        if self.owns_weights:
            state = {k: v.cpu().contiguous() for k, v in self.state_dict().items()}
            atomic_write(os.path.join(folder, TEACHER_STATE_FILE), lambda f: f.write(save_safetensors(state)),
                         binary=True)
        meta = {"sync_count": self.sync_count, "last_sync_step": self.last_sync_step, "mode": self.mode}
        atomic_write_json(os.path.join(folder, TEACHER_META_FILE), meta)

    def restore(self, folder: str) -> bool:
        """Load what :meth:`save` wrote; ``False`` when the folder holds no teacher."""
        meta_path = os.path.join(folder, TEACHER_META_FILE)
        if not os.path.exists(meta_path):
            return False
        if self.owns_weights:
            self.load_state_dict(load_safetensors(os.path.join(folder, TEACHER_STATE_FILE), device="cpu"))
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        self.sync_count, self.last_sync_step = meta["sync_count"], meta["last_sync_step"]
        return True


@contextlib.contextmanager
def _deterministic(module):
    """Every submodule in eval mode (dropout off, whatever the user's ``lora_dropout``), except the top module's own
    flag: the trainer reads ``model.training`` to tell training from evaluation (metrics, skills), and teacher calls
    happen during training. Every module's mode is restored on exit."""
    modes = [(m, m.training) for m in module.modules()]
    top = module.training
    module.eval()
    module.training = top
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def _gathered(params):
    """Under DeepSpeed ZeRO-3 parameters are partitioned placeholders: gather them for the update, and let rank 0's
    result be broadcast back on exit (every rank computes the same update). A no-op otherwise."""
    partitioned = [p for p in params if hasattr(p, "ds_id")]
    if not partitioned:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(partitioned, modifier_rank=0)
