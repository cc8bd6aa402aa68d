import pytest

from skill_sd_trl import SkillSDConfig

BASE = dict(output_dir="/tmp/skill-sd-test-config", use_cpu=True, bf16=False, report_to=[])


def make(**kw):
    return SkillSDConfig(**BASE, **kw)


def test_defaults_are_the_papers():
    cfg = make()
    assert cfg.sdl_coef == 0.001 and cfg.grpo_coef == 1.0
    assert cfg.teacher_sync_mode == "dynamic" and cfg.teacher_context == "skill"
    assert cfg.sdl_is_clip is None and cfg.rollout_policy == "student"
    assert cfg.needs_teacher


def test_sdl_coef_zero_is_plain_grpo():
    assert not make(sdl_coef=0.0).needs_teacher


@pytest.mark.parametrize(
    "kwargs, field, fix",
    [
        (dict(sdl_is_clip=0.5), "sdl_is_clip", "≥ 1"),
        (dict(teacher_sync_mode="ema"), "teacher_ema_rate", "teacher_ema_rate="),
        (dict(teacher_sync_mode="ema", teacher_ema_rate=1.5), "teacher_ema_rate", "(0, 1]"),
        (dict(teacher_ema_rate=0.1), "teacher_ema_rate", "teacher_sync_mode='ema'"),
        (dict(rollout_policy="teacher", sdl_coef=0.0), "rollout_policy", "sdl_coef > 0"),
        (dict(skills_in_student_prompt=True), "skills_in_student_prompt", "sdl_coef=0"),
        (dict(sdl_coef=0.0, grpo_coef=0.0), "grpo_coef", "grpo_coef=1"),
        (dict(sdl_coef=-1.0), "sdl_coef", "≥ 0"),
        (dict(teacher_sync_mode="sometimes"), "teacher_sync_mode", "'dynamic'"),
        (dict(teacher_context="oracle"), "teacher_context", "'ground_truth'"),
        (dict(sdl_estimator="k2"), "sdl_estimator", "'rho_k3'"),
        (dict(teacher_skill_template="no placeholder"), "teacher_skill_template", "{context}"),
        (dict(teacher_sync_steps=0), "teacher_sync_steps", "≥ 1"),
    ],
)
def test_inconsistent_options_fail_at_config_time_naming_field_and_fix(kwargs, field, fix):
    with pytest.raises(ValueError) as err:
        make(**kwargs)
    assert field in str(err.value)
    assert fix in str(err.value)


def test_every_new_field_has_help():
    from dataclasses import fields

    from trl import GRPOConfig

    parent = {f.name for f in fields(GRPOConfig)}
    new = [f for f in fields(SkillSDConfig) if f.name not in parent]
    assert len(new) >= 15
    for f in new:
        assert f.metadata.get("help"), f"{f.name} has no help string"
