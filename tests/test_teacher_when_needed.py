"""A teacher is built only when some row of the run can carry a teacher signal: a skill provider that can return
skills (a bank, or a dataset column that exists), a ground-truth column, a teacher whose weights differ from the
student's under teacher_context='none', or a teacher that samples the rollouts. Otherwise it would cost a LoRA adapter
(or a full copy of the model) and a forward per batch for nothing."""

import logging
from types import SimpleNamespace

import pytest
from _trainer_utils import config, config_kwargs, length_reward, lora, toy_dataset, trainer
from trl import GRPOConfig

from skill_sd_trl import SkillSDTrainer
from skill_sd_trl.method.teacher import _no_signal_reason
from skill_sd_trl.skills.bank import SkillBank
from skill_sd_trl.skills.provider import ColumnSkillProvider

NO_SKILL_COLUMN = ["prompt", "task_id", "ground_truth"]


def _args(**overrides):
    settings = {"rollout_policy": "student", "teacher_context": "skill", "teacher_sync_mode": "dynamic",
                "teacher_sync_steps": 1}
    return SimpleNamespace(**{**settings, **overrides})


@pytest.mark.parametrize("overrides, provider, columns, peft, built", [
    ({}, ColumnSkillProvider("skill"), NO_SKILL_COLUMN, True, False),  # a plain GRPO dataset
    ({}, ColumnSkillProvider("skill"), NO_SKILL_COLUMN + ["skill"], True, True),
    ({}, ColumnSkillProvider("hint"), NO_SKILL_COLUMN + ["skill"], True, False),  # skill_column names another column
    ({}, ColumnSkillProvider("skill"), None, True, True),  # columns unknown (an iterable dataset): build
    ({}, SkillBank(), NO_SKILL_COLUMN, True, True),  # a bank fills up during training
    ({"teacher_context": "ground_truth"}, ColumnSkillProvider("skill"), NO_SKILL_COLUMN, True, True),
    ({"rollout_policy": "teacher"}, ColumnSkillProvider("skill"), NO_SKILL_COLUMN, True, True),
    ({"teacher_context": "none"}, ColumnSkillProvider("skill"), NO_SKILL_COLUMN, True, False),  # the student itself
    ({"teacher_context": "none"}, ColumnSkillProvider("skill"), NO_SKILL_COLUMN, False, False),
    ({"teacher_context": "none", "teacher_sync_mode": "frozen"}, None, NO_SKILL_COLUMN, True, True),
    ({"teacher_context": "none", "teacher_sync_mode": "ema"}, None, NO_SKILL_COLUMN, False, True),
    ({"teacher_context": "none", "teacher_sync_steps": 2}, None, NO_SKILL_COLUMN, True, True),  # a stale adapter
    ({"teacher_context": "none", "teacher_sync_steps": 2}, None, NO_SKILL_COLUMN, False, False),  # live weights
])
def test_who_can_give_the_teacher_a_signal(overrides, provider, columns, peft, built):
    assert (_no_signal_reason(_args(**overrides), provider, columns, peft) is None) == built


def test_a_plain_grpo_config_on_a_grpo_dataset_builds_no_teacher_adapter(tiny_model_path, tmp_path, caplog):
    kwargs = {k: v for k, v in config_kwargs(tmp_path).items() if k != "sdl_coef"}
    with caplog.at_level(logging.WARNING, logger="skill_sd_trl.method.teacher"):
        tr = SkillSDTrainer(model=tiny_model_path, reward_funcs=length_reward, args=GRPOConfig(**kwargs),
                            train_dataset=toy_dataset().remove_columns("skill"), peft_config=lora())
    assert tr.args.sdl_coef == 0.001 and tr.teacher is None
    assert list(tr.model.peft_config) == ["default"]
    assert not [n for n, _ in tr.model.named_parameters() if ".teacher." in n]
    assert "No teacher is built, so L_SDL is 0 and this run is GRPO: teacher_context='skill' reads skills from the " \
           "dataset column 'skill', which the training dataset lacks" in caplog.text


def test_full_finetuning_with_a_frozen_teacher_and_nothing_to_score_makes_no_copy(tiny_model_path, tmp_path,
                                                                                  monkeypatch):
    import copy

    from transformers import PreTrainedModel

    copies, deepcopy = [], copy.deepcopy

    def spy(x, *args, **kwargs):  # records each model deep-copied from the outside (not copy's own recursion)
        if isinstance(x, PreTrainedModel) and not args and not kwargs:
            copies.append(type(x).__name__)
        return deepcopy(x, *args, **kwargs)

    monkeypatch.setattr(copy, "deepcopy", spy)
    tr = trainer(tiny_model_path, tmp_path, peft=False, dataset=toy_dataset().remove_columns("skill"),
                 teacher_sync_mode="frozen")
    assert tr.teacher is None and copies == []
    with_skills = trainer(tiny_model_path, tmp_path / "s", peft=False, teacher_sync_mode="frozen")
    assert with_skills.teacher is not None and len(copies) == 1  # the same settings with skills: one copy


@pytest.mark.parametrize("overrides, dataset", [
    ({}, toy_dataset()),  # the skill column
    ({"teacher_context": "ground_truth"}, toy_dataset().remove_columns("skill")),
    ({"teacher_context": "none", "teacher_sync_mode": "frozen"}, toy_dataset().remove_columns("skill")),
    ({"rollout_policy": "teacher"}, toy_dataset().remove_columns("skill")),
], ids=["skill-column", "ground-truth", "none-frozen", "teacher-rollouts"])
def test_the_teacher_adapter_is_built_where_a_row_can_use_it(tiny_model_path, tmp_path, overrides, dataset):
    tr = trainer(tiny_model_path, tmp_path, dataset=dataset, **overrides)
    assert tr.teacher is not None and list(tr.model.peft_config) == ["default", "teacher"]


def test_a_skill_bank_gets_a_teacher_on_a_dataset_without_skills(tiny_model_path, tmp_path):
    tr = SkillSDTrainer(model=tiny_model_path, reward_funcs=length_reward, args=config(tmp_path),
                        train_dataset=toy_dataset().remove_columns("skill"), peft_config=lora(),
                        skill_provider=SkillBank())
    assert tr.teacher is not None
