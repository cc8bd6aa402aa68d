"""The methods of the paper's tables, defined once: name, row label and the options that make the method.

A recipe names its method (``method: skill_sd``) and may set any other option, a method option included (a λ sweep
writes ``method: skill_sd`` and ``sdl_coef: 0.1``); an experiment's ``methods:`` name them the same way; the
evaluation table's row label and the tests read them from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The options a method is made of (every method states all of them).
METHOD_OPTIONS = ("sdl_coef", "grpo_coef", "skill_source", "teacher_context", "teacher_sync_mode", "rollout_policy",
                  "skills_in_student_prompt")


@dataclass(frozen=True)
class Method:
    name: str
    label: str  # the paper's row name
    options: Mapping[str, Any]  # every METHOD_OPTIONS key, plus any option the method needs (off-policy: no vLLM)
    description: str


def _method(name: str, label: str, description: str, sdl_coef: float = 0.001, grpo_coef: float = 1.0,
            skill_source: str = "bank", teacher_context: str = "skill", teacher_sync_mode: str = "dynamic",
            rollout_policy: str = "student", skills_in_student_prompt: bool = False, **extra: Any) -> Method:
    options = dict(sdl_coef=sdl_coef, grpo_coef=grpo_coef, skill_source=skill_source, teacher_context=teacher_context,
                   teacher_sync_mode=teacher_sync_mode, rollout_policy=rollout_policy,
                   skills_in_student_prompt=skills_in_student_prompt, **extra)
    return Method(name, label, options, description)


METHODS: dict[str, Method] = {m.name: m for m in (
    _method("grpo", "Vanilla GRPO", "GRPO alone (λ = 0), no skills anywhere", sdl_coef=0.0, skill_source="none"),
    _method("skill_sd", "Skill-SD", "the paper's method: GRPO + λ · L_SDL, on-policy, dynamic skill-conditioned "
                                    "teacher"),
    _method("skill_augmented_grpo", "Skill-augmented GRPO", "the skill in the student's prompt (train/test "
            "mismatch), plain GRPO", sdl_coef=0.0, skills_in_student_prompt=True),
    _method("vanilla_opd", "Vanilla OPD", "on-policy distillation from a teacher shown the reference solution, no "
            "reward term", sdl_coef=1.0, grpo_coef=0.0, skill_source="none", teacher_context="ground_truth"),
    _method("frozen_teacher", "Skill-SD, frozen teacher", "ablation: on-policy, teacher frozen at the initial student",
            teacher_sync_mode="frozen"),
    _method("off_policy", "Skill-SD, off-policy", "ablation: the skill-conditioned teacher generates the rollouts",
            rollout_policy="teacher", use_vllm=False),
    _method("off_policy_frozen", "Skill-SD, off-policy, frozen teacher", "ablation: off-policy rollouts and a frozen "
            "teacher", teacher_sync_mode="frozen", rollout_policy="teacher", use_vllm=False),
)}


def method_named(name: str, where: str = "method") -> Method:
    """The method called ``name``; one line listing the methods otherwise."""
    if name not in METHODS:
        import difflib

        close = difflib.get_close_matches(str(name), list(METHODS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{where}={name!r} is not a method{hint}; choose one of {', '.join(METHODS)}.")
    return METHODS[name]


def with_method(recipe: Mapping[str, Any], name: str | None = None) -> dict[str, Any]:
    """``recipe`` with its method's options filled in (the recipe's own keys win) and the ``method`` key removed:
    the options a run actually uses. ``name`` (a ``--method`` flag) overrides the recipe's ``method``."""
    recipe = dict(recipe)
    chosen = name or recipe.pop("method", None)
    recipe.pop("method", None)
    if chosen is None:
        return recipe
    return {**method_named(chosen).options, **recipe}


def _value(key: str, script, args) -> Any:
    return getattr(script, key) if hasattr(script, key) else getattr(args, key)


def identify(script, args) -> tuple[Method | None, dict[str, Any]]:
    """The method a run's options make, and the method options that differ from its definition (``{}``: exactly it).

    The method with the fewest differing options wins (ties: the order of :data:`METHODS`); ``(None, {})`` when
    no method is within one option."""
    best, best_diff = None, None
    for method in METHODS.values():
        diff = {k: _value(k, script, args) for k, v in method.options.items() if _value(k, script, args) != v}
        if best_diff is None or len(diff) < len(best_diff):
            best, best_diff = method, diff
    if best_diff is not None and len(best_diff) > 1:
        return None, {}
    return best, best_diff or {}


def method_label(script, args) -> str:
    """The evaluation table's row label of a run: its method's paper name, with what differs (``Skill-SD (λ=0.1)``)."""
    method, diff = identify(script, args)
    if method is None:
        return f"custom (λ={args.sdl_coef}, {args.teacher_context} teacher, {args.teacher_sync_mode}, " \
               f"{args.rollout_policy} rollouts)"
    if not diff:
        return method.label
    changed = ", ".join(f"λ={v}" if k == "sdl_coef" else f"{k}={v}" for k, v in diff.items())
    return f"{method.label} ({changed})"
