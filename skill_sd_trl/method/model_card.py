"""The Skill-SD section appended to TRL's model card: the method, its settings and the last logged metrics."""

from __future__ import annotations

import math

#: The paper, as TRL's model card cites it (``Trainer._paper``).
PAPER = {
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


def skill_sd_section(args, train_dataset, log_history: list[dict]) -> str:
    """A Markdown section: method, λ, teacher, environment, and the last logged metrics."""
    columns = getattr(train_dataset, "column_names", None) or []
    envs = sorted({str(e) for e in train_dataset["env"]}) if "env" in columns else []
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
        f"| SDL estimator, reduction | {_estimator(args)}, {getattr(args, 'sdl_reduction', 'token_mean')} |",
        f"| teacher sync | {args.teacher_sync_mode} (every {args.teacher_sync_steps} step(s)) |",
        f"| teacher context | {args.teacher_context} |",
        f"| rollout policy | {args.rollout_policy} |",
        f"| skills in student prompt | {args.skills_in_student_prompt} |",
        f"| environment | {', '.join(envs) or 'n/a'} |",
        f"| loss type | {args.loss_type} |",
        f"| generations per prompt | {args.num_generations} |",
    ]
    last: dict[str, float] = {}
    for entry in log_history:
        for key, value in entry.items():
            if isinstance(value, (int, float)) and (key.startswith(("env/", "self_distillation/", "teacher/", "skills/"))
                                                    or key in ("reward", "loss")):
                last[key] = value
    if last:
        lines += ["", "Last logged training metrics:", "", "| metric | value |", "|---|---|"]
        lines += [f"| `{k}` | {v:.4g} |" for k, v in sorted(last.items()) if math.isfinite(v)]
    return "\n".join(lines)


def _estimator(args) -> str:
    """``sdl_estimator``, with the dense estimator's support (``dense (top-64 + tail)``, ``dense (full vocabulary)``)."""
    if args.sdl_estimator != "dense":
        return args.sdl_estimator
    return f"dense (top-{args.sdl_topk} + tail)" if args.sdl_topk else "dense (full vocabulary)"
