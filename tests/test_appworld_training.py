"""A real 2-step Skill-SD training run on the offline app world (tiny model, LoRA, HTTP server, sandbox)."""

import math

import torch

from skill_sd_trl import SkillSDTrainer
from skill_sd_trl.envs.appworld import OfflineAppWorldEnv, make_offline_appworld_dataset
from skill_sd_trl.envs.appworld.offline.server import OfflineAppWorldServer
from skill_sd_trl.rewards import completion_reward
from skill_sd_trl.rollout.multi_turn import MultiTurnRollout, RolloutLimits

from _trainer_utils import config, lora


def test_two_step_skill_sd_run_on_offline_appworld(tiny_model_path, tmp_path):
    ds = make_offline_appworld_dataset("train", seed=0).select(range(2))
    ds = ds.add_column("skill", ["golden_workflow:\n" + g for g in ds["ground_truth"]])  # reference code as a skill
    with OfflineAppWorldServer() as server:
        tr = SkillSDTrainer(
            model=tiny_model_path, reward_funcs=completion_reward, train_dataset=ds, peft_config=lora(),
            args=config(tmp_path, max_completion_length=256, max_steps=2),
            rollout_func=MultiTurnRollout(lambda: OfflineAppWorldEnv(server_url=server.url),
                                          RolloutLimits(max_turns=2, max_new_tokens_per_turn=8)),
        )
        before = {n: p.detach().clone() for n, p in tr.model.named_parameters() if ".default." in n}
        tr.train()
    logs = [h for h in tr.state.log_history if "env/appworld_offline/acc" in h]
    assert len(logs) == 2
    for key in ("env/appworld_offline/comp", "self_distillation/sdl", "skills/coverage", "reward"):
        assert math.isfinite(logs[-1][key]), key
    assert logs[-1]["skills/coverage"] == 1.0 and logs[-1]["self_distillation/sdl"] > 0
    # Comp. of a do-nothing episode is the share of "nothing else changed" tests: a number in [0, 1]
    assert 0.0 <= logs[-1]["env/appworld_offline/comp"] <= 1.0
    after = {n: p.detach() for n, p in tr.model.named_parameters() if ".default." in n}
    assert any(not torch.equal(before[n], after[n]) for n in before)
    episodes = tr.pop_finished_trajectories()
    assert len(episodes) == 8 and all(e.env_name == "appworld_offline" for e in episodes)
    assert all(len(e.turns) >= 1 and "events" in e.turns[0].info for e in episodes)
