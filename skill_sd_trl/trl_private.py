"""The one module that touches TRL's private surface (supported: ``trl>=1.16,<1.17``, pinned in setup.cfg).

`SkillSDTrainer` is a `GRPOTrainer` subclass: it overrides private hooks, calls private methods and reads attributes
TRL does not document. Everything of that kind is named here, in two forms:

- ``CONTRACT``, a table of every private hook, method, attribute and helper the package relies on: the parameter
  names it passes or receives, the text (batch keys, attribute assignments, calls) the parent's source must hold.
  ``tests/test_trl_contract.py`` pins each entry against the installed TRL, so an upgrade fails there, one message
  per changed entry, naming what changed;
- the functions below, through which every other module reaches TRL's private calls and attribute reads. The
  trainer's own method overrides (``def _generate(...)`` and its ``super()._generate(...)``) are the only other
  place a private TRL name appears (``tests/test_trl_private.py`` checks the package's code for them).

Only trl, torch and transformers are imported here: this module sits below every layer of the package.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
from dataclasses import dataclass

import torch
from trl import GRPOTrainer
from trl.models.utils import disable_gradient_checkpointing, unwrap_model_for_generation
from trl.trainer.utils import add_fused_lm_head, pad  # noqa: F401  (pad is re-exported for teacher scoring)

SUPPORTED_TRL = ">=1.16,<1.17"


# ---------------------------------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Private:
    """One piece of TRL's (or transformers' Trainer's) private surface the package relies on.

    ``use``: ``override`` (SkillSDTrainer overrides it and may call it via ``super()`` in that override), ``parent``
    (the parent's own code path, which the trainer relies on without calling it), ``call`` (a method called through a
    function here), ``read`` (an attribute read through a function here), ``helper`` (a TRL function or class used
    here).
    """

    name: str  # dotted path, importable: "trl.GRPOTrainer._generate", "trl.trainer.utils.pad", ...
    use: str
    why: str
    params: tuple[str, ...] = ()  # the leading parameter names, in order
    accepts: tuple[str, ...] = ()  # parameter names passed by keyword, wherever they sit
    source: str | None = None  # whose source ``contains`` / ``once`` are checked in (default: ``name``)
    contains: tuple[str, ...] = ()  # text the source must hold: keys read, attributes assigned, calls made
    once: tuple[str, ...] = ()  # text the source must hold exactly once
    value: object = None  # when not None: the attribute's required value

    @property
    def word(self) -> str:
        """The identifier itself (``_generate``), as it would appear in code."""
        return self.name.rsplit(".", 1)[-1]


_G = "trl.GRPOTrainer"
_INIT = f"{_G}.__init__"
_SCORE = f"{_G}._generate_and_score_completions"

CONTRACT: tuple[Private, ...] = (
    # -- hooks SkillSDTrainer overrides -------------------------------------------------------------------------------
    Private(f"{_G}.__init__", "override",
            "extended (skill provider, teacher); the parent patches the student with a fused LM head. The dense "
            "estimator's logits pass scales by args.temperature as that head does, and keeps the entropy's gradient "
            "exactly when the parent's entropy bonus is on (read from args)",
            params=("self", "model", "reward_funcs", "args"),
            contains=("add_fused_lm_head(", 'outputs=("log_probs", "entropy")', "temperature=self.temperature",
                      "self.temperature = args.temperature", "self.entropy_coef = args.entropy_coef",
                      "self.use_adaptive_entropy = args.use_adaptive_entropy",
                      "self._entropy_bonus_enabled = self.entropy_coef != 0.0 or self.use_adaptive_entropy")),
    Private(_SCORE, "override", "teacher scoring of the parent's batch, bandit feedback",
            params=("self", "inputs"),
            contains=("self._generate(prompts)",
                      "self._calculate_rewards(inputs, prompts, completions, completion_ids_list)",
                      "(self.accelerator.process_index + 1) * len(prompts)",
                      '"prompt_ids": prompt_ids', '"prompt_mask": prompt_mask', '"completion_ids": completion_ids',
                      '"completion_mask": completion_mask', '"num_items_in_batch": num_items_in_batch',
                      'output["old_per_token_logps"]', 'output["tool_mask"]', 'output["importance_sampling_ratio"]',
                      "environment.reset(**reset_kwargs)", 'content + observation', "extra_fields")),
    Private(f"{_G}._prepare_inputs", "parent",
            "it must split and shuffle every batch-first tensor the trainer adds (teacher log-probs) with the rest",
            params=("self", "generation_batch"), contains=("self._generate_and_score_completions(generation_batch)",
                                                           "shuffle_sequence_dict(", "split_tensor_dict(")),
    Private(f"{_G}._generate", "override",
            "prompts after reset(), rollout binding, teacher-acted sampling; the first returned item is prompt_ids",
            params=("self", "prompts"),
            contains=("self.rollout_func(prompts, self)", 'extra_fields.pop("env_mask", None)',
                      "return prompt_ids, completion_ids, tool_mask, completions, logprobs, extra_fields")),
    Private(f"{_G}._calculate_rewards", "override", "the weighted rewards of the batch, for bandit feedback",
            params=("self", "inputs", "prompts", "completions", "completion_ids_list")),
    Private(f"{_G}._get_per_token_logps_and_entropies", "override",
            "captures the student's log-probs (and shares prompts); the parent's padded pass scores the teacher",
            params=("self", "model", "input_ids", "attention_mask", "logits_to_keep", "batch_size", "compute_entropy",
                    "compute_aux_loss"),
            contains=("fused_lm_head=True", "outputs.log_probs[:, -logits_to_keep:]",
                      "labels[:, :-logits_to_keep] = -100", "return logps, entropies, aux_loss")),
    Private(f"{_G}.compute_loss", "override", "L_GRPO + λ·L_SDL", params=("self", "model", "inputs", "return_outputs",
                                                                       "num_items_in_batch"),
            contains=("self._compute_loss(model, inputs)",)),
    Private(f"{_G}._compute_loss", "parent",
            "called by the parent's compute_loss; its one student pass is the log-probs L_SDL reuses (for the dense "
            "estimator, a logits pass over prompt + completion whose last logits_to_keep positions are the "
            "completion's); its normalizers are the ones L_SDL copies (sdl_normalizer)",
            params=("self", "model", "inputs"),
            once=("self._get_per_token_logps_and_entropies(",),
            contains=("input_ids = torch.cat([prompt_ids, completion_ids], dim=1)",
                      "logits_to_keep = completion_ids.size(1)", "compute_entropy=True",
                      "loss = loss - apply_coef * entropy_loss",
                      'elif self.loss_type in ["cispo", "dapo", "vespo"]:',
                      'normalizer = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes',
                      ("normalizer = normalizer * self.current_gradient_accumulation_steps / "
                       "self.args.steps_per_generation"),
                      ("old_per_token_logps = per_token_logps.detach() if old_per_token_logps is None else "
                       "old_per_token_logps"),
                      'per_token_loss * inputs["importance_sampling_ratio"]',
                      'mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]',
                      )),
    Private(f"{_G}._load_optimizer_and_scheduler", "override", "restores the teacher and the skill bank on resume",
            params=("self", "checkpoint")),
    Private(f"{_G}.save_model", "override", "the teacher and the skill bank travel with every save",
            params=("self", "output_dir", "_internal_call")),
    Private(f"{_G}.create_model_card", "override", "the Skill-SD section of the card",
            params=("self", "model_name", "dataset_name", "tags")),
    Private(f"{_G}.log", "override", "the skill pipeline's metrics join the row; the parent averages _metrics",
            params=("self", "logs", "start_time"), contains=("self._metrics[mode].items()",)),
    # -- private methods called through this module -------------------------------------------------------------------
    Private(f"{_G}._generate_single_turn", "call", "multi-turn rollouts sample one turn with the trainer's sampler",
            params=("self", "prompt_ids", "images", "multimodal_fields", "num_generations"),
            accepts=("num_generations",),
            contains=("self.vllm_generation.generate(", "generation_config=self.generation_config",
                      "self._dist.summon_full_params(self.model_wrapped, recurse=False)")),
    Private(f"{_G}._tokenize_prompts", "call", "prompt ids exactly as the parent renders them (tools included)",
            params=("self", "prompts"), contains=("return prompt_ids, images, multimodal_fields",)),
    # -- attributes read through this module ---------------------------------------------------------------------------
    Private(f"{_G}._metrics", "read", "Skill-SD's metrics are logged with the parent's", source=_INIT,
            contains=('self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}',)),
    Private(f"{_G}._tokenizer", "read", "pad id and decoding of single-turn completions", source=_INIT,
            contains=("self._tokenizer = processing_class",)),
    Private(f"{_G}._dist", "read", "FSDP parameters gathered around the cached multi-turn sampler", source=_INIT,
            contains=("self._dist = DistributedBackend(self.accelerator)",)),
    Private("trl.distributed.DistributedBackend.summon_full_params", "helper", "as _generate_single_turn does",
            params=("self", "module")),
    Private(f"{_G}.vllm_generation", "read", "the per-turn cap reaches TRL's vLLM generator", source=_INIT,
            contains=("self.vllm_generation = VLLMGeneration(",)),
    Private("trl.generation.vllm_generation.VLLMGeneration.max_completion_length", "read",
            "capped per turn, restored after", source="trl.generation.vllm_generation.VLLMGeneration",
            contains=("self.max_completion_length = max_completion_length",
                      "max_completion_length = self.max_completion_length")),
    Private(f"{_G}.generation_config", "read", "the transformers sampler's settings, capped per turn", source=_INIT,
            contains=("self.generation_config = GenerationConfig(",)),
    Private(f"{_G}.generation_kwargs", "read", "unwrapping the model for generation as the parent does",
            source=_INIT, contains=("self.generation_kwargs = generation_kwargs",)),
    Private(f"{_G}.eos_token_ids", "read", "where a sampled turn ends", source=_INIT,
            contains=("self.eos_token_ids = eos_token_ids",)),
    Private(f"{_G}.chat_template", "read", "observations rendered with the template the parent uses", source=_INIT,
            contains=("self.chat_template = get_training_chat_template(processing_class)",
                      "self.chat_template_kwargs = args.chat_template_kwargs or {}")),
    Private(f"{_G}.use_vllm", "read", "which sampler a rollout uses, and whether it returns log-probs",
            source=_INIT,
            contains=("self.use_vllm = args.use_vllm",
                      "self.use_transformers_continuous_batching = args.use_transformers_continuous_batching")),
    Private(f"{_G}.max_completion_length", "read", "an episode's token budget", source=_INIT,
            contains=("self.max_completion_length = args.max_completion_length",)),
    Private(f"{_G}.rollout_func", "read", "bound to the batch's rows for each generation batch", source=_INIT,
            contains=("self.rollout_func = rollout_func",)),
    Private(f"{_G}.reward_weights", "read", "the weighted reward the bandit receives, as the parent sums it",
            source=_SCORE, contains=("rewards_per_func * self.reward_weights.to(",)),
    Private(f"{_G}.loss_type", "read", "which normalizer L_SDL shares with the parent's loss", source=_INIT,
            contains=("self.loss_type = args.loss_type",)),
    Private(f"{_G}.loss_is_scaled_for_ga", "read", "the parent's loss is already divided for gradient accumulation",
            value=True),
    Private("transformers.Trainer.current_gradient_accumulation_steps", "read",
            "L_SDL is divided for gradient accumulation as the parent's loss", source="transformers.Trainer._run_epoch",
            contains=("self.current_gradient_accumulation_steps = len(batch_samples)",)),
    Private("transformers.Trainer.model_wrapped", "read", "the model unwrapped for generation as the parent does",
            source="transformers.Trainer.__init__", contains=("self.model_wrapped = model",)),
    # -- TRL helpers ---------------------------------------------------------------------------------------------------
    Private("trl.trainer.utils.add_fused_lm_head", "helper",
            "the student's forward(fused_lm_head=True) gives log-probs (0 where no label); without the flag, the "
            "model's own forward (logits: the dense estimator); a frozen full copy needs its own patch",
            params=("model", "temperature", "cast_lm_head_to_fp32"),
            contains=("fused_lm_head=False", "return original_forward(*args, **kwargs)",
                      "model.forward = types.MethodType(_fused_forward, model)", ".masked_fill(~mask, 0)",
                      "x.new_zeros(mask.shape).masked_scatter(mask, x)")),
    Private("trl.trainer.utils.split_tensor_dict", "parent",
            "a generation batch is cut into equal micro-batches, so sdl_reduction='sequence_sum' divides by rows · GA "
            "for every loss type (sdl_normalizer)", params=("tensor_dict", "num_chunks"),
            contains=("chunk_size = first_tensor.shape[0] // num_chunks",)),
    Private("trl.trainer.utils.FusedCausalLMOutput", "helper", "what a fused forward returns",
            contains=("log_probs:", "entropy:")),
    Private("trl.trainer.utils.pad", "helper", "teacher prompts left-padded as the parent pads",
            params=("tensors", "padding_value", "padding_side")),
    Private("trl.models.utils.disable_gradient_checkpointing", "helper", "the teacher's no-grad forward",
            params=("model", "gradient_checkpointing_kwargs")),
    Private("trl.models.utils.unwrap_model_for_generation", "helper", "the cached multi-turn sampler's model",
            params=("model", "accelerator", "gather_deepspeed3_params", "generation_kwargs",
                    "gradient_checkpointing_kwargs")),
)


def resolve(path: str):
    """The object a dotted path names: the longest importable module, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(path)


def changes(entry: Private) -> list[str]:
    """What the installed TRL changed of ``entry`` (empty when it is as this package expects)."""
    if entry.value is not None:
        try:
            found = resolve(entry.name)
        except (ImportError, AttributeError):
            return [f"{entry.name} is gone"]
        return [] if found == entry.value else [f"{entry.name} is {found!r}, expected {entry.value!r}"]
    problems = []
    target = None
    if entry.params or entry.accepts or not entry.source:
        try:
            target = resolve(entry.name)
        except (ImportError, AttributeError):
            return [f"{entry.name} is gone"]
    if entry.params or entry.accepts:
        names = list(inspect.signature(target).parameters)
        if names[: len(entry.params)] != list(entry.params):
            problems.append(f"parameters are {names[: len(entry.params) + 2]}, expected {list(entry.params)}")
        problems += [f"no parameter {p!r}" for p in entry.accepts if p not in names]
    if entry.contains or entry.once:
        where = entry.source or entry.name
        try:
            text = inspect.getsource(resolve(where))
        except (ImportError, AttributeError):
            return problems + [f"{where} is gone"]
        except (OSError, TypeError):  # compiled, or defined where no source file is kept
            return problems + [f"{where} has no readable source"]
        problems += [f"{where} no longer contains {s!r}" for s in entry.contains if s not in text]
        problems += [f"{where} contains {s!r} {text.count(s)} times, expected once" for s in entry.once
                     if text.count(s) != 1]
    return problems


# ---------------------------------------------------------------------------------------------------------------------
# Sampling (multi-turn rollouts)
# ---------------------------------------------------------------------------------------------------------------------
def generate_single_turn(trainer, prompt_ids: list[list[int]]):
    """One completion per context with the trainer's own sampler (vLLM or transformers): ``(completion_ids,
    logprobs)``. One generation each: every episode has its own history."""
    return trainer._generate_single_turn(prompt_ids, None, {}, num_generations=1)


def tokenize_prompts(trainer, prompts: list) -> list[list[int]]:
    """Prompt ids exactly as the parent renders them (chat template, tools of each row's environment)."""
    return trainer._tokenize_prompts(prompts)[0]


@contextlib.contextmanager
def generation_model(trainer):
    """The model to sample from, unwrapped (DeepSpeed/FSDP gathered) as ``_generate_single_turn``'s transformers path
    prepares it."""
    with (
        unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                    gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
                                    generation_kwargs=trainer.generation_kwargs,
                                    gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs) as model,
        trainer._dist.summon_full_params(trainer.model_wrapped, recurse=False),
    ):
        yield model


def generation_config(trainer):
    """The parent's transformers ``GenerationConfig`` (sampling settings, max_new_tokens)."""
    return trainer.generation_config


@contextlib.contextmanager
def generation_length_capped(trainer, n: int):
    """Cap the trainer's generation length to ``n`` (transformers config and TRL's vLLM generator), restored after."""
    saved = []
    config = getattr(trainer, "generation_config", None)
    if config is not None:
        saved.append((config, "max_new_tokens", config.max_new_tokens))
        config.max_new_tokens = n
    vllm = getattr(trainer, "vllm_generation", None) if samples_with_vllm(trainer) else None
    if vllm is not None:
        saved.append((vllm, "max_completion_length", vllm.max_completion_length))
        vllm.max_completion_length = n
    try:
        yield
    finally:
        for obj, attr, value in saved:
            setattr(obj, attr, value)


def samples_with_vllm(trainer) -> bool:
    return bool(getattr(trainer, "use_vllm", False))


def samples_with_plain_generate(trainer) -> bool:
    """Whether the parent samples with ``transformers`` ``generate`` (not vLLM, not continuous batching)."""
    return not samples_with_vllm(trainer) and not getattr(trainer, "use_transformers_continuous_batching", False)


def eos_token_ids(trainer) -> list[int]:
    return trainer.eos_token_ids


def chat_template(trainer) -> tuple[str | None, dict]:
    """The template the parent renders prompts with (None: the tokenizer's own) and its extra arguments."""
    return trainer.chat_template, getattr(trainer, "chat_template_kwargs", {})


def completion_budget(trainer) -> int:
    """``max_completion_length``: an episode's whole completion (every turn, every observation) fits in it."""
    return int(trainer.max_completion_length)


def pad_token_id(trainer) -> int:
    return trainer._tokenizer.pad_token_id


def decode(trainer, ids) -> str:
    return trainer._tokenizer.decode(ids, skip_special_tokens=True)


def rollout_func(trainer):
    """The ``rollout_func`` the trainer was built with (None without one)."""
    return trainer.rollout_func


@contextlib.contextmanager
def rollout_func_swapped(trainer, func):
    """The parent's ``_generate`` calls ``self.rollout_func(prompts, self)``: run it with ``func`` instead."""
    saved = trainer.rollout_func
    trainer.rollout_func = func
    try:
        yield
    finally:
        trainer.rollout_func = saved


# ---------------------------------------------------------------------------------------------------------------------
# Metrics and rewards
# ---------------------------------------------------------------------------------------------------------------------
def log_metrics(trainer, mode: str, metrics: dict[str, float]) -> None:
    """Append to the parent's per-mode metric lists, which its ``log`` averages over the logging window."""
    for key, value in metrics.items():
        trainer._metrics[mode][key].append(value)


def total_rewards(trainer, rewards_per_func: torch.Tensor) -> torch.Tensor:
    """Each completion's weighted reward summed over reward functions, as the parent computes it."""
    weights = trainer.reward_weights.to(rewards_per_func.device).unsqueeze(0)
    return (rewards_per_func * weights).nansum(dim=1)


# ---------------------------------------------------------------------------------------------------------------------
# Log-probs and the loss
# ---------------------------------------------------------------------------------------------------------------------
def fused_logps(model, labels: torch.Tensor, **inputs) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(log_probs, entropy)`` of ``labels`` from TRL's fused LM head (no logits materialized); ``entropy`` is None
    when the model's head was patched without it. Positions labelled -100 are not scored."""
    out = model(**inputs, labels=labels, fused_lm_head=True)
    return out.log_probs, out.entropy


def parent_logps_pass(trainer):
    """The parent's padded log-prob pass ``(model, input_ids, attention_mask, logits_to_keep, batch_size=...)`` ->
    ``(log_probs, entropies, aux_loss)``, bypassing SkillSDTrainer's override (no prompt sharing, no capture)."""
    return functools.partial(GRPOTrainer._get_per_token_logps_and_entropies, trainer)


def no_gradient_checkpointing(model, gradient_checkpointing_kwargs):
    """Gradient checkpointing off for a no-grad forward (it would turn the KV cache off), restored after."""
    return disable_gradient_checkpointing(model, gradient_checkpointing_kwargs)


def refresh_fused_lm_head(module, temperature: float, cast_lm_head_to_fp32: bool) -> None:
    """TRL patches a model's ``forward`` on the instance with a closure over the *original* model's forward; a deep
    copy would keep calling the live student. Give the copy its own patch (same temperature and dtype)."""
    if "forward" not in module.__dict__:
        return
    del module.__dict__["forward"]  # back to the class's forward, bound to the copy
    add_fused_lm_head(module, temperature=temperature, cast_lm_head_to_fp32=cast_lm_head_to_fp32)


#: Loss types whose parent normalizer is the token count of the whole accumulation window.
GLOBAL_TOKEN_LOSSES = ("dapo", "cispo", "vespo")


def sdl_normalizer(trainer, inputs: dict, token_count: torch.Tensor, mode: str, sequences: int | None = None):
    """What L_SDL's sum over action tokens is divided by, scaled for gradient accumulation as ``_compute_loss`` scales
    its loss.

    ``token_mean`` (``sequences`` None): the parent's own normalizer for the global-token losses (the generation
    batch's action tokens over all processes, brought to one accumulation window), else the micro-batch's token count.
    ``sequence_sum`` (``sequences``: the micro-batch's row count): that count times the accumulation steps, for every
    loss type. It is the global one too: the parent's global normalizer, counted in sequences, is the generation
    batch's rows over all processes (rows · steps_per_generation · num_processes), divided by num_processes and by
    steps_per_generation / GA, i.e. rows · GA, since ``split_tensor_dict`` cuts a generation batch into equal parts.
    """
    accumulation = trainer.current_gradient_accumulation_steps if mode == "train" else 1.0
    if sequences is not None:
        return float(max(sequences, 1)) * accumulation
    if trainer.loss_type in GLOBAL_TOKEN_LOSSES:
        normalizer = inputs["num_items_in_batch"].clamp(min=1.0) / trainer.accelerator.num_processes
        if mode == "train":
            normalizer = normalizer * accumulation / trainer.args.steps_per_generation
        return normalizer
    return token_count.clamp(min=1.0) * accumulation
