"""The dense estimator on a multi-turn Sokoban batch (scripted policy, so every token is known): environment
observations sit inside the completion (tool_mask 0); the teacher's support carries nothing there, and neither the
SDL nor its gradient sees them."""

import pytest
import torch
from test_rollout import _trainer, scripted_batch

from skill_sd_trl.envs.sokoban import make_sokoban_dataset
from skill_sd_trl.method.dense import SUPPORT_IDS, SUPPORT_LOGPS, TAIL_LOGP


@pytest.mark.parametrize("cache", [False, True], ids=["padded", "student-prompt-cache"])
def test_environment_tokens_never_enter_the_dense_sdl(tiny_model_path, tmp_path, cache):
    ds = make_sokoban_dataset("small", "train", seed=0).filter(lambda r: r["solution_length"] >= 3)
    ds = ds.add_column("skill", ["golden_workflow: " + g for g in ds["ground_truth"]])
    tr = _trainer(tiny_model_path, tmp_path, ds, per_device_train_batch_size=2, num_generations=2,
                  max_completion_length=4096, sdl_estimator="dense", sdl_topk=8, student_prompt_cache=cache,
                  teacher_sync_mode="frozen")
    with torch.no_grad():  # a frozen teacher adapter of its own: the KL is well above float rounding
        for name, param in tr.model.named_parameters():
            if ".teacher." in name:
                param.add_(0.5 * torch.randn_like(param))
    batch = scripted_batch(tr)
    env = (batch["tool_mask"] == 0) & (batch["completion_mask"] == 1)
    model = (batch["tool_mask"] == 1) & (batch["completion_mask"] == 1)
    assert env.any() and model.any()
    for key in (SUPPORT_IDS, SUPPORT_LOGPS, TAIL_LOGP):
        assert (batch[key][env] == 0).all(), key  # the teacher's support is carried for action tokens only
    assert (batch[SUPPORT_LOGPS][model] < 0).all()
    base = tr.compute_loss(tr.model, batch).item()
    sdl = tr._metrics["train"]["self_distillation/sdl"][-1]
    assert sdl > 0

    def poisoned(where):
        out = dict(batch)
        out[SUPPORT_LOGPS] = batch[SUPPORT_LOGPS].masked_fill(where[..., None], -50.0)
        out[TAIL_LOGP] = batch[TAIL_LOGP].masked_fill(where, -50.0)
        out["teacher_per_token_logps"] = batch["teacher_per_token_logps"].masked_fill(where, -50.0)
        return tr.compute_loss(tr.model, out).item()

    assert poisoned(env) == pytest.approx(base, abs=1e-7)
    assert poisoned(model) != pytest.approx(base, abs=1e-7)  # the same poison on action tokens moves it
