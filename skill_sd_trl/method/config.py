"""`SkillSDConfig`: `GRPOConfig` plus the fields of skill-conditioned self-distillation (and nothing else)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields

from trl import GRPOConfig

logger = logging.getLogger(__name__)

TEACHER_SYNC_MODES = ("dynamic", "frozen", "ema")
TEACHER_CONTEXTS = ("skill", "ground_truth", "none")
SKILL_POSITIONS = ("system", "user_prefix", "user_suffix")
ROLLOUT_POLICIES = ("student", "teacher")
SDL_ESTIMATORS = ("rho_k3", "k3", "k1", "dense")
SDL_REDUCTIONS = ("token_mean", "sequence_sum")

DEFAULT_SKILL_TEMPLATE = (
    "Below is a skill distilled from earlier attempts at this very task. Use it to act well.\n"
    "<skill>\n{context}\n</skill>"
)
DEFAULT_GROUND_TRUTH_TEMPLATE = "A reference solution for this task:\n<reference>\n{context}\n</reference>"


@dataclass
class SkillSDConfig(GRPOConfig):
    r"""
    Configuration of [`SkillSDTrainer`]: every [`~trl.GRPOConfig`] parameter, plus the Skill-SD fields below.

    The loss is `grpo_coef · L_GRPO + sdl_coef · L_SDL`, where `L_SDL` is the importance-weighted reverse KL from
    the student to a skill-conditioned teacher (a LoRA-synced copy of the student). See `docs/method.md`.
    """

    sdl_coef: float = field(
        default=0.001,
        metadata={
            "help": "λ, the weight of the self-distillation loss L_SDL. 0.001 is the paper's best on AppWorld; 0 turns "
            "the trainer into plain GRPO (no teacher forward at all)."
        },
    )
    grpo_coef: float = field(
        default=1.0,
        metadata={
            "help": "Weight of the GRPO policy loss. Set 0 (with sdl_coef > 0) for pure on-policy distillation without "
            "reward (vanilla OPD)."
        },
    )
    sdl_estimator: str = field(
        default="rho_k3",
        metadata={
            "help": "Per-token distillation estimator. 'rho_k3' (default, unbiased reverse-KL gradient under a stale "
            "sampler): ρ·(exp(-ℓ)-1+ℓ) on the sampled token. 'dense': the reverse KL KL(π_θ‖π_T) itself at every "
            "action position, over the teacher's top sdl_topk tokens, the sampled token and one bucket for the rest "
            "of the vocabulary (so the teacher also raises tokens the student did not sample; no ρ: it is an exact "
            "expectation over the next token; costs the student's logits at the completion positions). Ablations: "
            "'k3' (no ρ: forward-KL gradient on-policy) and 'k1' (ℓ itself: zero expected gradient on-policy).",
            "choices": list(SDL_ESTIMATORS),
        },
    )
    sdl_topk: int | None = field(
        default=64,
        metadata={
            "help": "sdl_estimator='dense' only: how many of the teacher's most likely tokens (computed in its scoring "
            "pass) form the support at each position, with the sampled token and a tail bucket for the rest. 0 or None: "
            "the whole vocabulary (exact; the teacher's log-probs over the vocabulary are then carried in the batch, "
            "for small vocabularies)."
        },
    )
    sdl_reduction: str = field(
        default="token_mean",
        metadata={
            "help": "How L_SDL is reduced, on the GRPO loss's own accumulation normalizer. 'token_mean' (default): a "
            "mean over action tokens, reading the paper's (1/N)·Σ_i Σ_t with N = generated tokens, as verl's KL-loss "
            "slot does. 'sequence_sum': each trajectory's sum over its action tokens, then a mean over trajectories "
            "(N = trajectories): L_SDL then grows with the trajectory length L, and λ weighs like λ·L under "
            "'token_mean' (which fits the paper's λ sweep, where 0.01 was unstable).",
            "choices": list(SDL_REDUCTIONS),
        },
    )
    sdl_is_clip: float | None = field(
        default=None,
        metadata={
            "help": "Optional upper clip of the importance ratio ρ in L_SDL (must be ≥ 1). None (default, as in the "
            "paper) leaves ρ unclipped."
        },
    )
    sdl_log_ratio_clamp: float = field(
        default=20.0,
        metadata={"help": "Log-ratios ℓ and log ρ are clamped to ±this value before exponentiation (fp32 safety)."},
    )
    teacher_sync_mode: str = field(
        default="dynamic",
        metadata={
            "help": "How the teacher's weights follow the student: 'dynamic' (the latest student before every "
            "generation batch), 'frozen' (the initial student), 'ema' (teacher ← (1-r)·teacher + r·student).",
            "choices": list(TEACHER_SYNC_MODES),
        },
    )
    teacher_sync_steps: int = field(
        default=1,
        metadata={"help": "Sync the teacher every this many optimizer steps (checked before each generation batch)."},
    )
    teacher_ema_rate: float | None = field(
        default=None,
        metadata={"help": "EMA update rate r in (0, 1]; required when teacher_sync_mode='ema'."},
    )
    teacher_context: str = field(
        default="skill",
        metadata={
            "help": "The teacher's privileged context: 'skill' (from the skill provider / bank; Skill-SD), "
            "'ground_truth' (the dataset column `ground_truth_column`; vanilla OPD), or 'none' (teacher prompt = "
            "student prompt).",
            "choices": list(TEACHER_CONTEXTS),
        },
    )
    ground_truth_column: str = field(
        default="ground_truth",
        metadata={"help": "Dataset column holding the ground truth shown to the teacher when teacher_context='ground_truth'."},
    )
    skill_column: str = field(
        default="skill",
        metadata={
            "help": "Dataset column read by the default skill provider (used when no skill provider or skill bank is "
            "given to the trainer)."
        },
    )
    task_id_column: str = field(
        default="task_id",
        metadata={"help": "Dataset column with a stable task id (the skill bank keys on it)."},
    )
    skills_in_student_prompt: bool = field(
        default=False,
        metadata={
            "help": "Skill-augmented GRPO baseline: the *student's* prompt contains the skill (train/test mismatch). "
            "Requires sdl_coef=0."
        },
    )
    rollout_policy: str = field(
        default="student",
        metadata={
            "help": "Who generates the rollouts: 'student' (on-policy, default) or 'teacher' (off-policy ablation: the "
            "skill-conditioned teacher acts; importance ratios use the teacher's log-probs as the sampler's).",
            "choices": list(ROLLOUT_POLICIES),
        },
    )
    teacher_skill_template: str = field(
        default=DEFAULT_SKILL_TEMPLATE,
        metadata={"help": "How a skill is rendered into the teacher's prompt; must contain '{context}'."},
    )
    teacher_ground_truth_template: str = field(
        default=DEFAULT_GROUND_TRUTH_TEMPLATE,
        metadata={"help": "How the ground truth is rendered into the teacher's prompt; must contain '{context}'."},
    )
    teacher_skill_position: str = field(
        default="system",
        metadata={
            "help": "Where the rendered context goes in the teacher's prompt: 'system' (appended to the system "
            "message, or a new one), 'user_prefix' / 'user_suffix' (before / after the first user message).",
            "choices": list(SKILL_POSITIONS),
        },
    )
    teacher_prompt_cache: bool = field(
        default=True,
        metadata={
            "help": "Score the teacher by encoding each distinct teacher prompt once and reusing its KV cache for the "
            "prompt's rollouts (exact; fewer tokens). Set False for models without a KV cache in training mode."
        },
    )
    student_prompt_cache: bool = field(
        default=False,
        metadata={
            "help": "In the student's log-prob pass (with gradient), encode each group's shared prompt once and score "
            "its rollouts from the KV cache: the same log-probs and gradients up to float rounding, with fewer tokens "
            "forward and backward (the CPU recipes turn it on). Off (default): the parent's padded forward, so that "
            "sdl_coef=0 trains bit for bit like GRPOTrainer."
        },
    )
    teacher_adapter_name: str = field(
        default="teacher",
        metadata={"help": "Name of the second LoRA adapter that holds the teacher's weights (PEFT models only)."},
    )
    log_loss_grad_norms: bool = field(
        default=False,
        metadata={
            "help": "Diagnostic: for every training micro-batch with a teacher signal, also log the gradient norm of "
            "each loss term (grpo_coef·L_GRPO and sdl_coef·L_SDL) over the trainable parameters, their ratio and "
            "cosine (self_distillation/grad_*). Two extra backward passes per micro-batch; it does not change the "
            "update. Use it to see whether λ is large enough to move the student at all."
        },
    )

    def __post_init__(self):
        _check_batch_counts(self)  # before GRPOConfig's own checks, which divide by these
        super().__post_init__()
        self._check_skill_sd_fields()

    @classmethod
    def from_grpo_config(cls, args: GRPOConfig) -> "SkillSDConfig":
        """A `SkillSDConfig` holding every setting of ``args`` exactly as it resolved, plus the Skill-SD defaults.

        This is what lets ``SkillSDTrainer(args=GRPOConfig(...))`` work: the one-class switch from `GRPOTrainer`.
        ``args`` is copied as it is (not re-initialized, which would re-derive fields such as
        ``generation_batch_size`` and fail), and logged once.
        """
        upgraded = cls.__new__(cls)
        upgraded.__dict__.update(vars(args))
        own = {f.name for f in fields(GRPOConfig)}
        for f in fields(cls):
            if f.name not in own:
                setattr(upgraded, f.name, f.default)
        _check_batch_counts(upgraded)
        upgraded._check_skill_sd_fields()
        if not _UPGRADE_LOGGED:
            _UPGRADE_LOGGED.append(True)
            logger.warning(
                "SkillSDTrainer got a GRPOConfig: using it as a SkillSDConfig with the Skill-SD defaults (sdl_coef=%s, "
                "teacher_context=%r, teacher_sync_mode=%r). Pass a SkillSDConfig to choose them.",
                upgraded.sdl_coef, upgraded.teacher_context, upgraded.teacher_sync_mode,
            )
        return upgraded

    def _check_skill_sd_fields(self) -> None:
        _check_choice("sdl_estimator", self.sdl_estimator, SDL_ESTIMATORS)
        _check_choice("sdl_reduction", self.sdl_reduction, SDL_REDUCTIONS)
        _check_choice("teacher_sync_mode", self.teacher_sync_mode, TEACHER_SYNC_MODES)
        _check_choice("teacher_context", self.teacher_context, TEACHER_CONTEXTS)
        _check_choice("teacher_skill_position", self.teacher_skill_position, SKILL_POSITIONS)
        _check_choice("rollout_policy", self.rollout_policy, ROLLOUT_POLICIES)
        if self.sdl_coef < 0:
            raise ValueError(f"sdl_coef must be ≥ 0, got {self.sdl_coef}. Use 0 for plain GRPO.")
        if self.grpo_coef < 0:
            raise ValueError(f"grpo_coef must be ≥ 0, got {self.grpo_coef}.")
        if self.sdl_coef == 0 and self.grpo_coef == 0:
            raise ValueError("sdl_coef and grpo_coef are both 0: nothing to train. Set grpo_coef=1 (GRPO) or sdl_coef>0.")
        if self.sdl_is_clip is not None and self.sdl_is_clip < 1:
            raise ValueError(
                f"sdl_is_clip={self.sdl_is_clip} is below 1, which would down-weight every on-policy token. Use a "
                "value ≥ 1 (e.g. 2.0) or None for no clip."
            )
        if self.sdl_topk is not None and self.sdl_topk < 0:
            raise ValueError(f"sdl_topk must be >= 0 or None, got {self.sdl_topk!r}; use e.g. 64, or 0 for the whole "
                             "vocabulary.")
        if self.sdl_estimator == "dense" and self.sdl_is_clip is not None:
            raise ValueError(f"sdl_is_clip={self.sdl_is_clip} has nothing to clip with sdl_estimator='dense' (it uses no "
                             "importance ratio); drop sdl_is_clip or use sdl_estimator='rho_k3'.")
        if self.sdl_log_ratio_clamp <= 0:
            raise ValueError(f"sdl_log_ratio_clamp must be > 0, got {self.sdl_log_ratio_clamp}; 20 is a safe value.")
        if self.teacher_sync_steps < 1:
            raise ValueError(f"teacher_sync_steps must be ≥ 1, got {self.teacher_sync_steps}.")
        if self.teacher_sync_mode == "ema":
            if self.teacher_ema_rate is None:
                raise ValueError("teacher_sync_mode='ema' needs teacher_ema_rate in (0, 1], e.g. teacher_ema_rate=0.05.")
            if not 0 < self.teacher_ema_rate <= 1:
                raise ValueError(f"teacher_ema_rate must be in (0, 1], got {self.teacher_ema_rate}.")
        elif self.teacher_ema_rate is not None:
            raise ValueError(
                f"teacher_ema_rate is set but teacher_sync_mode={self.teacher_sync_mode!r}; set "
                "teacher_sync_mode='ema' or drop teacher_ema_rate."
            )
        if self.rollout_policy == "teacher" and self.sdl_coef == 0:
            raise ValueError(
                "rollout_policy='teacher' with sdl_coef=0 trains GRPO on another policy's samples with no teacher "
                "signal; set sdl_coef > 0 (e.g. 0.001) or rollout_policy='student'."
            )
        if self.skills_in_student_prompt and self.sdl_coef != 0:
            raise ValueError(
                "skills_in_student_prompt=True is the skill-augmented GRPO baseline and requires sdl_coef=0 (the "
                "student already sees the skill)."
            )
        if self.skills_in_student_prompt and self.teacher_context != "skill":
            raise ValueError("skills_in_student_prompt=True needs teacher_context='skill' (the skill source).")
        if self.rollout_policy == "teacher" and self.use_vllm:
            raise ValueError(
                "rollout_policy='teacher' is not supported with use_vllm=True (vLLM serves only the student "
                "adapter); set use_vllm=False for the off-policy ablation."
            )
        for name in ("teacher_skill_template", "teacher_ground_truth_template"):
            if "{context}" not in getattr(self, name):
                raise ValueError(f"{name} must contain the placeholder '{{context}}' where the context is inserted.")

    @property
    def sdl_support_size(self) -> int | None:
        """The dense estimator's teacher top-k (None: the whole vocabulary)."""
        return self.sdl_topk or None

    @property
    def needs_teacher(self) -> bool:
        """Whether a teacher forward is needed at all (L_SDL active or the teacher generates)."""
        return self.sdl_coef > 0


_UPGRADE_LOGGED: list[bool] = []  # the GRPOConfig upgrade is announced once per process


#: GRPOConfig's counts that TRL divides by or batches with, and how to fix a value below 1. Checked before
#: ``GRPOConfig.__post_init__``: there a 0 ends in a ZeroDivisionError (num_generations; per_device_train_batch_size with
#: generation_batch_size) or passes, to fail at the first batch inside torch's sampler (the others) or, for
#: num_iterations, to train 0 steps without a word.
_COUNT_FIXES = {
    "per_device_train_batch_size": "set it to a multiple of num_generations, e.g. --per_device_train_batch_size 8",
    "per_device_eval_batch_size": "set it to a multiple of num_generations, e.g. --per_device_eval_batch_size 8",
    "gradient_accumulation_steps": "use 1 for no accumulation",
    "steps_per_generation": "use 1 or more, or leave it unset (it then follows gradient_accumulation_steps)",
    "generation_batch_size": "use a multiple of num_generations, or leave it unset (derived from the batch size)",
    "num_iterations": "use 1 (each generation batch trained on once) or more",
}


def _check_batch_counts(args) -> None:
    """One-line errors naming the field and the fix for the GRPOConfig counts that must be positive."""
    if args.num_generations is not None and args.num_generations < 2:
        raise ValueError(
            f"num_generations must be >= 2 (group-relative advantages compare each completion with the rest of its "
            f"group; TRL's rule), got {args.num_generations}; set --num_generations 2 or more, e.g. 8."
        )
    for name, fix in _COUNT_FIXES.items():
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}; {fix}.")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {', '.join(map(repr, choices))}.")
