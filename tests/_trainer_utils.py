"""Helpers for trainer tests: a small dataset, a deterministic reward, and config/trainer factories."""

from datasets import Dataset
from peft import LoraConfig

from skill_sd_trl import SkillSDConfig, SkillSDTrainer


def toy_dataset(n=4, skills="even"):
    """Rows with a `skill` on even-numbered tasks (skills="even"), on every task ("all"), or on none ("none")."""
    rows = []
    for i in range(n):
        rows.append(
            {
                "prompt": [
                    {"role": "system", "content": "Answer briefly."},
                    {"role": "user", "content": f"Count to {i + 2}."},
                ],
                "task_id": f"task-{i}",
                "skill": (f"golden_workflow: say {' '.join(str(k) for k in range(1, i + 3))}" if skills == "all" or (skills == "even" and i % 2 == 0) else ""),
                "ground_truth": " ".join(str(k) for k in range(1, i + 3)),
            }
        )
    return Dataset.from_list(rows)


def length_reward(completions, **kwargs):
    """A deterministic reward with spread inside each group."""
    return [float(len(c[0]["content"]) % 5) for c in completions]


def lora():
    return LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)


def config_kwargs(tmp_path, **overrides):
    kw = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=6,
        max_steps=2,
        learning_rate=1e-2,
        use_cpu=True,
        bf16=False,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        seed=0,
        sdl_coef=0.5,
    )
    kw.update(overrides)
    return kw


def config(tmp_path, **overrides):
    return SkillSDConfig(**config_kwargs(tmp_path, **overrides))


def trainer(model_path, tmp_path, peft=True, dataset=None, **overrides):
    return SkillSDTrainer(
        model=model_path,
        reward_funcs=length_reward,
        args=config(tmp_path, **overrides),
        train_dataset=dataset if dataset is not None else toy_dataset(),
        peft_config=lora() if peft else None,
    )


def first_batch(tr):
    """One generation batch as the trainer builds it (rows repeated num_generations times).

    Also puts the trainer in the state `train()` would (training mode, accumulation counter) so that tests can call
    `_generate_and_score_completions` and `compute_loss` directly.
    """
    tr.model.train()
    if not hasattr(tr, "current_gradient_accumulation_steps"):
        tr.current_gradient_accumulation_steps = tr.args.gradient_accumulation_steps
    ds = tr.train_dataset
    rows = [dict(ds[i]) for i in range(len(ds)) for _ in range(tr.num_generations)][: tr.args.per_device_train_batch_size]
    return rows
