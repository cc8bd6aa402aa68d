"""The teacher scores in eval mode: no dropout of the base model's own, even while the student trains with it.

The tiny model here has attention dropout 0.5 (GRPOConfig's disable_dropout is False by default, so the student keeps
it). With full fine-tuning and a dynamic teacher the teacher *is* the live student module; with LoRA the teacher
adapter sits on the same dropout-carrying base. Either way its log-probs must be deterministic and equal an
eval-mode forward; the train-mode forward of the same weights must differ (the check can fail).
"""

import json
from pathlib import Path

import pytest
import torch

from skill_sd_trl.models.tiny import save_tiny_model

from _trainer_utils import first_batch, toy_dataset, trainer

DROPOUT = 0.5


@pytest.fixture(scope="module")
def dropout_model_path(tmp_path_factory) -> str:
    path = Path(save_tiny_model(tmp_path_factory.mktemp("tiny-dropout")))
    config = json.loads((path / "config.json").read_text())
    config["attention_dropout"] = DROPOUT
    (path / "config.json").write_text(json.dumps(config))
    return str(path)


def _eval_mode_logps(tr, teacher_prompts, batch) -> list[torch.Tensor]:
    """log π_T of each row's completion, by a plain forward of the teacher module put in eval mode by hand."""
    out = []
    ids = tr._tokenize_prompts(teacher_prompts)[0]
    with torch.no_grad(), tr.teacher.activated() as model:
        modes = [(m, m.training) for m in model.modules()]
        model.eval()
        try:
            for i, prompt_ids in enumerate(ids):
                n = int(batch["completion_mask"][i].sum())
                seq = torch.tensor([list(prompt_ids) + batch["completion_ids"][i, :n].tolist()])
                logits = model(input_ids=seq).logits[0].float() / tr.args.temperature
                out.append(torch.log_softmax(logits[:-1], -1).gather(1, seq[0, 1:, None])[:, 0][-n:])
        finally:
            for m, mode in modes:
                m.training = mode
    return out


def _train_mode_forward(tr, seq) -> torch.Tensor:
    with torch.no_grad():
        return tr.model(input_ids=seq).logits


@pytest.mark.parametrize("peft", [False, True], ids=["full-finetuning-dynamic", "lora"])
@pytest.mark.parametrize("prompt_cache", [True, False], ids=["shared-prompt-cache", "padded"])
def test_the_teacher_scores_without_the_base_models_dropout(dropout_model_path, tmp_path, peft, prompt_cache):
    tr = trainer(dropout_model_path, tmp_path, peft=peft, dataset=toy_dataset(skills="all"),
                 teacher_prompt_cache=prompt_cache)
    assert tr.model.config.attention_dropout == DROPOUT and not tr.args.disable_dropout
    assert peft or tr.teacher._copy is None  # full fine-tuning: the live student module is the teacher
    rows = first_batch(tr)
    tr.model.train()
    batch = tr._generate_and_score_completions([dict(r) for r in rows])
    teacher_prompts = [tr._render(r["prompt"], r["skill"]) for r in rows]

    scores = [tr._teacher_logps(batch, teacher_prompts, "train") for _ in range(3)]
    assert all(torch.equal(scores[0], s) for s in scores[1:])
    assert torch.equal(scores[0], batch["teacher_per_token_logps"])
    for i, expected in enumerate(_eval_mode_logps(tr, teacher_prompts, batch)):
        assert torch.allclose(scores[0][i, : expected.numel()], expected, atol=1e-5), i
    # the student still trains with its dropout, and its modes are back
    assert tr.model.training and all(m.training for m in tr.model.modules())
    seq = torch.tensor([tr._tokenize_prompts([teacher_prompts[0]])[0][0]])
    assert not torch.equal(_train_mode_forward(tr, seq), _train_mode_forward(tr, seq))
