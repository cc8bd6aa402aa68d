"""Skill-SD training for the multi-process test: run with `torchrun --nproc_per_node 2` or as one plain process.

Usage: python dist_train.py MODEL_PATH OUT_DIR PER_DEVICE_BATCH
Writes OUT_DIR/rank<r>.json with the rank's skill bank, logged metrics and a checksum of the trained adapter.
"""

import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from peft import LoraConfig  # noqa: E402
from skill_sd_trl import SkillSDConfig, SkillSDTrainer  # noqa: E402
from skill_sd_trl.envs.sokoban import SokobanEnv, make_sokoban_dataset  # noqa: E402
from skill_sd_trl.rewards import env_reward  # noqa: E402
from skill_sd_trl.rollout.multi_turn import MultiTurnRollout, RolloutLimits  # noqa: E402
from skill_sd_trl.skills.bank import SkillBank  # noqa: E402
from skill_sd_trl.skills.callback import SkillSummarizerCallback  # noqa: E402
from skill_sd_trl.skills.summarizers import ExperienceSummarizer  # noqa: E402


def main(model_path: str, out: str, batch: int) -> None:
    ds = make_sokoban_dataset("tiny", "train", seed=0).select([0])
    args = SkillSDConfig(
        output_dir=out, use_cpu=True, bf16=False, report_to=[], save_strategy="no", logging_steps=1, seed=0,
        per_device_train_batch_size=batch, num_generations=4, max_completion_length=96, max_steps=3,
        learning_rate=1e-2, sdl_coef=1.0, generation_kwargs={"do_sample": False},
    )
    bank = SkillBank()
    trainer = SkillSDTrainer(
        model=model_path, reward_funcs=env_reward, args=args, train_dataset=ds, skill_provider=bank,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
        rollout_func=MultiTurnRollout(SokobanEnv, RolloutLimits(max_turns=2, max_new_tokens_per_turn=6)),
    )
    # wait for each step's skills and share them at once, so the runs are comparable step by step
    callback = SkillSummarizerCallback(trainer, ExperienceSummarizer(), bank, wait_for_skills=60)
    trainer.add_callback(callback)
    trainer.train()
    rank = trainer.accelerator.process_index
    weights = sum(float(p.detach().abs().sum()) for n, p in trainer.model.named_parameters() if ".default." in n)
    logs = [h for h in trainer.state.log_history if "reward" in h]
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"bank": bank.to_dict(), "logs": logs, "weights": weights,
                   "world": trainer.accelerator.num_processes}, f)
    if trainer.accelerator.num_processes > 1:  # leave together and close gloo before the interpreter exits
        import torch.distributed

        trainer.accelerator.wait_for_everyone()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
