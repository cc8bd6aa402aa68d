"""The SDL fields of issue 26 (`sdl_reduction`, `sdl_estimator='dense'`, `sdl_topk`): defaults that keep every existing
result, and one-line errors naming the field and the fix."""

import pytest
from trl import GRPOConfig, TrlParser

from skill_sd_trl import SkillSDConfig

BASE = dict(output_dir="/tmp/skill-sd-test-sdl-config", use_cpu=True, bf16=False, report_to=[])


def make(**kw):
    return SkillSDConfig(**BASE, **kw)


def test_defaults_keep_the_sampled_estimator_and_the_token_mean():
    cfg = make()
    assert cfg.sdl_estimator == "rho_k3" and cfg.sdl_reduction == "token_mean" and cfg.sdl_topk == 64
    upgraded = SkillSDConfig.from_grpo_config(GRPOConfig(**BASE))
    assert upgraded.sdl_reduction == "token_mean" and upgraded.sdl_estimator == "rho_k3" and upgraded.sdl_topk == 64


@pytest.mark.parametrize("topk, size", [(64, 64), (1, 1), (0, None), (None, None)])
def test_the_dense_support_size(topk, size):
    cfg = make(sdl_estimator="dense", sdl_topk=topk, sdl_reduction="sequence_sum")
    assert cfg.sdl_support_size == size


@pytest.mark.parametrize(
    "kwargs, field, fix",
    [
        (dict(sdl_reduction="sequence_mean"), "sdl_reduction", "'token_mean', 'sequence_sum'"),
        (dict(sdl_estimator="full_kl"), "sdl_estimator", "'dense'"),
        (dict(sdl_estimator="dense", sdl_topk=-1), "sdl_topk", "0 for the whole vocabulary"),
        (dict(sdl_estimator="dense", sdl_is_clip=2.0), "sdl_is_clip", "drop sdl_is_clip"),
    ],
)
def test_mistakes_fail_in_one_line_naming_the_field_and_the_fix(kwargs, field, fix):
    with pytest.raises(ValueError) as err:
        make(**kwargs)
    message = str(err.value)
    assert field in message and fix in message and "\n" not in message


def test_the_fields_parse_from_the_command_line():
    (cfg,) = TrlParser((SkillSDConfig,)).parse_args_into_dataclasses(
        ["--output_dir", "/tmp/x", "--use_cpu", "--bf16", "false", "--report_to", "none", "--sdl_estimator", "dense",
         "--sdl_topk", "16", "--sdl_reduction", "sequence_sum"])
    assert (cfg.sdl_estimator, cfg.sdl_topk, cfg.sdl_reduction) == ("dense", 16, "sequence_sum")
