"""The `train` command as a library function: recipe dataclasses in, a trained (and evaluated) model out."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil

from ..method.config import SkillSDConfig
from .interrupt import GracefulInterrupt
from .recipe import RecipeError
from .script_args import SkillSDScriptArguments

logger = logging.getLogger(__name__)
RECIPE_FILE = "recipe.yaml"
BANK_FILE = "skill_bank.json"


def build_trainer(script: SkillSDScriptArguments, args: SkillSDConfig, model_args):
    """Everything a recipe names, wired together: model, env, rollouts, reward, skill bank, summarizer callback."""
    from trl import get_peft_config, get_quantization_config

    from .. import rewards
    from ..method.trainer import SkillSDTrainer
    from ..rollout.multi_turn import MultiTurnRollout
    from ..skills.provider import ColumnSkillProvider

    spec = script.spec
    train_dataset = script.train_tasks(spec.dataset(script.train_split or spec.train_split))

    if args.use_cpu or not _cuda_available():
        from ..models import half_precision_cpu_warning

        warning = half_precision_cpu_warning(model_args.dtype)
        if warning:
            logger.warning(warning)

    _check_enough_tasks(len(train_dataset), args)

    model_path = _model_path(script, model_args, args.output_dir)
    # As trl/scripts/grpo.py: the model is loaded by the trainer from `model_init_kwargs` and the quantization config,
    # so revision, trust_remote_code, attention, dtype and 4/8-bit loading all take effect.
    args.model_init_kwargs = {"revision": model_args.model_revision, "trust_remote_code": args.trust_remote_code,
                              "attn_implementation": model_args.attn_implementation, "dtype": model_args.dtype,
                              **(args.model_init_kwargs or {})}

    rollout = MultiTurnRollout(spec.make_env, script.limits(), env_name=spec.name,
                               kv_cache=script.rollout_kv_cache)

    bank = None
    if script.skill_source == "bank":
        bank = _make_bank(script, args.resume_from_checkpoint, args.output_dir)
        provider = bank
    elif script.skill_source == "column":
        provider = ColumnSkillProvider(args.skill_column)
    else:
        provider = _NoSkills()

    trainer = SkillSDTrainer(
        model=model_path,
        reward_funcs=rewards.REWARD_FUNCS[script.reward],
        args=args,
        train_dataset=train_dataset,
        quantization_config=get_quantization_config(model_args),
        peft_config=get_peft_config(model_args),
        rollout_func=rollout,
        skill_provider=provider,
    )
    if bank is not None and args.teacher_context == "skill":
        from ..skills.callback import SkillSummarizerCallback

        # summarizer none: the bank is fixed, but the pipeline still merges its statistics, saves and restores it
        summarizer = None if script.summarizer == "none" else _make_summarizer(script, model_path)
        trainer.add_callback(SkillSummarizerCallback(trainer, summarizer, bank, call_timeout=script.summarizer_timeout,
                                                     skill_granularity=script.skill_granularity,
                                                     wait_for_skills=script.summarizer_wait,
                                                     flush_on_train_end=script.summarizer_timeout))
    if not script.tiny_model:  # a tiny random stand-in is no embedded model, whatever the recipe names
        _name_the_hub_base(trainer, model_args.model_name_or_path)
    return trainer


def _name_the_hub_base(trainer, name: str | None) -> None:
    """A model trained from an embedded alias names its Hub id (not the local cache folder) as its base, in the
    adapter config and the model card, so the pushed adapter loads anywhere."""
    from ..models import embedded_model_for

    spec = embedded_model_for(name) if name else None
    if spec is None:
        return
    model = trainer.accelerator.unwrap_model(trainer.model)
    for config in getattr(model, "peft_config", {}).values():
        config.base_model_name_or_path = spec.hub_id
    (model.get_base_model() if hasattr(model, "get_base_model") else model).config._name_or_path = spec.hub_id


def run_train(script: SkillSDScriptArguments, args: SkillSDConfig, model_args, recipe_path: str | None = None):
    """Train, save (model, skill bank, recipe, model card), push when asked, then evaluate base vs trained."""
    check_resume(args)
    trainer = build_trainer(script, args, model_args)
    if script.eval_only:
        results = evaluate_models(trainer, script, trained=False)
        print(saved_message(args.output_dir, recipe_path, trained=False))
        return trainer, results
    interrupt = GracefulInterrupt()
    trainer.add_callback(interrupt)
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    if interrupt.interrupted:
        raise TrainingInterrupted(interrupt.checkpoint_dir(args.output_dir), recipe_path)
    if recipe_path and trainer.is_world_process_zero():
        shutil.copyfile(recipe_path, os.path.join(args.output_dir, RECIPE_FILE))
    trainer.save_model(args.output_dir)
    trainer.save_state()  # trainer_state.json with the log history (read by `skill-sd-trl report`)
    if trainer.is_world_process_zero():
        trainer.create_model_card(model_name=os.path.basename(os.path.normpath(args.output_dir)))
    if args.push_to_hub:
        trainer.push_to_hub()
    results = []
    if script.evaluate_after_training and trainer.is_world_process_zero():
        results = evaluate_models(trainer, script, trained=True)
    if trainer.is_world_process_zero():
        print(saved_message(args.output_dir, recipe_path, trained=True))
    return trainer, results


class TrainingInterrupted(Exception):
    """Ctrl-C stopped training after a checkpoint was saved; the message says where and how to resume."""

    def __init__(self, checkpoint: str | None, recipe_path: str | None):
        self.checkpoint = checkpoint
        config = f"--config {recipe_path} " if recipe_path else ""
        super().__init__(f"Interrupted: a resumable checkpoint (adapter, optimizer, trainer state, skill bank, teacher) "
                         f"is in {checkpoint}. Resume with: skill-sd-trl train {config}"
                         f"--resume_from_checkpoint {checkpoint}")


def saved_message(output_dir: str, recipe_path: str | None, trained: bool) -> str:
    """Where a finished run put its files, and the follow-up commands that use them (paste-able)."""
    names = [n for n in ("adapter_model.safetensors", "model.safetensors", BANK_FILE, RECIPE_FILE, "README.md",
                         "eval_results.json", "trainer_state.json") if os.path.exists(os.path.join(output_dir, n))]
    config = f"--config {recipe_path} " if recipe_path else ""
    lines = [f"Saved to {output_dir}: {', '.join(names)}."]
    if trained:
        lines.append(f"  evaluate again: skill-sd-trl eval {config}--model {output_dir}")
        lines.append(f"  curves:         skill-sd-trl report {output_dir}")
        if BANK_FILE in names:
            lines.append(f"  skills:         skill-sd-trl show-bank {os.path.join(output_dir, BANK_FILE)}")
    return "\n".join(lines)


def evaluate_models(trainer, script: SkillSDScriptArguments, trained: bool):
    """The paper-style table for the starting model (and the trained one), printed and written to output_dir."""
    from .evaluation import evaluate, evaluation_mode, format_table, write_results
    from .methods import method_label
    limits = script.limits()
    common = dict(spec=script.spec, split=script.eval_split,
                  max_samples=script.max_eval_samples, batch_size=script.eval_batch_size, limits=limits,
                  completion_budget=trainer.args.max_completion_length, tokenizer=trainer.processing_class)
    results = []
    with evaluation_mode(trainer) as model:
        if not trained or hasattr(model, "disable_adapter"):  # full fine-tuning keeps no copy of the base weights
            with model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext():
                results.append(evaluate("base model", model=model, **common))
        if trained:
            results.append(evaluate(method_label(script, trainer.args), model=model, **common))
    print("\n" + format_table(results) + "\n")
    write_results(results, trainer.args.output_dir)
    return results


def _model_path(script: SkillSDScriptArguments, model_args, output_dir: str) -> str:
    from ..models import require_available, resolve_model

    if script.tiny_model:
        import tempfile

        from ..models.tiny import save_tiny_model

        # outside output_dir: it must not be uploaded with the run
        return save_tiny_model(tempfile.mkdtemp(prefix="skill-sd-tiny-model-"))
    if not model_args.model_name_or_path:
        raise RecipeError("model_name_or_path is required (e.g. smollm2-135m-instruct, or a Hub id such as "
                          "Qwen/Qwen3-4B-Instruct-2507).")
    path = resolve_model(model_args.model_name_or_path)
    require_available(path, model_args.model_revision)
    return path


def _make_bank(script: SkillSDScriptArguments, resume_from_checkpoint=None, output_dir: str | None = None):
    """The recipe's skill bank: empty, or ``bank_path``'s; keyed per task, or per scenario (``bank_scope``) by the
    environment's ``scenario_of``. A bank file, or the bank of the checkpoint to resume, saved with another scope is a
    one-line error here, before the model loads."""
    from ..skills.bank import SkillBank, bank_scope_of, read_bank_file

    scope = script.bank_scope
    key = script.spec.scenario_of if scope == "scenario" else None  # checked non-None when the recipe was parsed

    def saved_bank(path: str, what: str) -> dict:
        try:
            data = read_bank_file(path)
        except ValueError as exc:  # not a bank file: one line, not a traceback
            raise RecipeError(f"{what}: {' '.join(str(exc).split())}") from None
        saved = bank_scope_of(data)
        if saved != scope:
            raise RecipeError(f"{what} holds a skill bank keyed per {saved} (bank_scope: {saved}), but this recipe has "
                              f"bank_scope={scope!r}: set bank_scope: {saved}, or start from an empty bank.")
        return data

    checkpoint = resume_from_checkpoint  # the folder to resume from; true: the latest in output_dir
    if checkpoint is True or str(checkpoint).lower() == "true":
        from transformers.trainer_utils import get_last_checkpoint

        checkpoint = get_last_checkpoint(output_dir) if output_dir and os.path.isdir(output_dir) else None
    if checkpoint and str(checkpoint).lower() != "false" and os.path.isfile(os.path.join(checkpoint, BANK_FILE)):
        saved_bank(os.path.join(checkpoint, BANK_FILE), f"resume_from_checkpoint={checkpoint!r}")
    if script.bank_path:
        if not os.path.exists(script.bank_path):
            raise RecipeError(f"bank_path={script.bank_path!r} does not exist; drop it to start from an empty bank.")
        data = saved_bank(script.bank_path, f"bank_path={script.bank_path!r}")
        try:
            bank = SkillBank.from_dict(data, key=key)
        except ValueError as exc:
            raise RecipeError(f"bank_path={script.bank_path!r}: {' '.join(str(exc).split())}") from None
    else:
        bank = SkillBank(capacity_per_task=script.bank_capacity, strategy=script.bank_strategy, ucb_c=script.ucb_c,
                         scope=scope, key=key)
    if script.bank_demonstrations:
        spec = script.spec  # the run's own task set is never a demonstration's (the environment checks it too)
        own = [script.env_args.get(spec.task_set_arg, 0)] if spec.task_set_arg else []
        add_demonstration_skills(bank, spec, script.bank_demonstrations, exclude_task_sets=own)
    return bank


def add_demonstration_skills(bank, spec, count: int, exclude_task_sets=(), seed: int = 0) -> int:
    """Add to ``bank`` the skills of ``count`` solved demonstration episodes of ``spec`` (see the recipe field
    ``bank_demonstrations``); the number of skills it took (a duplicate is not stored twice)."""
    from ..models.warmstart import solved_skill_entry

    rows = spec.demonstrations(count, seed, list(exclude_task_sets))
    return sum(bank.add(solved_skill_entry(spec, row, task_id=row["task_id"])) for row in rows)


def _make_summarizer(script: SkillSDScriptArguments, student_path: str):
    from ..skills.summarizers import build_summarizer

    spec = script.spec  # the environment brings its summary prompt and event vocabulary; skills/ knows none
    events = {spec.name: spec.events} if spec.events is not None else {}
    env_prompts = {spec.name: spec.summary_prompt} if spec.summary_prompt is not None else {}
    if script.summarizer == "experience":
        return build_summarizer("experience", events=events)
    prompt = script.summarizer_prompt
    if prompt is not None and os.path.isfile(prompt):
        with open(prompt, encoding="utf-8") as f:
            prompt = f.read()
    if script.summarizer == "transformers":
        from ..models import resolve_model

        # a path, never the student object: the summarizer runs in a background thread on its own copy
        return build_summarizer("transformers", model=resolve_model(script.summarizer_model or student_path),
                                prompt=prompt, env_prompts=env_prompts)
    return build_summarizer("openai", base_url=script.summarizer_base_url, model=script.summarizer_model,
                            api_key_env=script.summarizer_api_key_env, timeout=script.summarizer_timeout, prompt=prompt,
                            env_prompts=env_prompts)


class _NoSkills:
    """A provider that never has a skill (teacher prompt = student prompt): the trainer builds no teacher for it."""

    provides_skills = False

    def select(self, task_id, example):
        return None

    def record_outcome(self, task_id, skill_id, rewards):
        return None


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def check_resume(args: SkillSDConfig) -> None:
    """``resume_from_checkpoint`` names a checkpoint that exists (before the model loads, where transformers would
    only find out after)."""
    from transformers.trainer_utils import get_last_checkpoint

    resume = args.resume_from_checkpoint
    if resume is None or resume is False or str(resume).lower() == "false":
        return
    if resume is True or str(resume).lower() == "true":
        if not (os.path.isdir(args.output_dir) and get_last_checkpoint(args.output_dir)):
            raise RecipeError(f"resume_from_checkpoint=true: output_dir {args.output_dir!r} holds no checkpoint-<step> "
                              "folder; name one, or drop the flag to start afresh.")
        return
    if not os.path.isdir(resume):
        raise RecipeError(f"resume_from_checkpoint={resume!r}: no such folder; give a checkpoint-<step> folder of a "
                          "run (or true for the latest in output_dir), or drop the flag to start afresh.")
    if not os.path.isfile(os.path.join(resume, "trainer_state.json")):
        raise RecipeError(f"resume_from_checkpoint={resume!r} is not a checkpoint (no trainer_state.json); give a "
                          "checkpoint-<step> folder inside the run's output_dir.")


def _check_enough_tasks(num_tasks: int, args: SkillSDConfig) -> None:
    """A training set smaller than one generation batch's tasks would train zero steps without a word: refuse it.

    TRL's sampler draws ``generation_batch_size // num_generations`` distinct tasks per generation batch (one optimizer
    step unless ``steps_per_generation`` says otherwise); ``GRPOConfig.__post_init__`` has already derived it.
    """
    tasks_per_step = max(1, args.generation_batch_size // args.num_generations)
    if num_tasks < tasks_per_step:
        raise RecipeError(
            f"max_train_samples: {num_tasks} training task(s), but one optimizer step takes {tasks_per_step} "
            f"(per_device_train_batch_size {args.per_device_train_batch_size} x {args.world_size} process(es) x "
            f"steps_per_generation {args.steps_per_generation} / num_generations {args.num_generations}). "
            f"Raise max_train_samples or lower per_device_train_batch_size.")
