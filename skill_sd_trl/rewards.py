"""Reward functions for multi-turn environments: they read what ``MultiTurnRollout`` measured.

TRL passes the rollout's extra keys (``env_reward``, ``env_success``, ...) to reward functions as keyword arguments.
"""

from __future__ import annotations


def env_reward(completions, env_reward=None, **kwargs) -> list[float]:
    """The environment's own episode return (e.g. Sokoban's shaped reward)."""
    if env_reward is None:
        raise ValueError("env_reward needs the rollout_func's `env_reward` key; use skill_sd_trl.rollout.multi_turn.MultiTurnRollout.")
    return [float(r) for r in env_reward]


def success_reward(completions, env_success=None, **kwargs) -> list[float]:
    """1 when the episode solved the task (Acc.), else 0."""
    if env_success is None:
        raise ValueError("success_reward needs the rollout_func's `env_success` key; use MultiTurnRollout.")
    return [float(s) for s in env_success]


def completion_reward(completions, env_completion=None, **kwargs) -> list[float]:
    """The partial completion (Comp.) in [0, 1]."""
    if env_completion is None:
        raise ValueError("completion_reward needs the rollout_func's `env_completion` key; use MultiTurnRollout.")
    return [float(c) for c in env_completion]


#: The recipe's ``reward`` names (``SkillSDScriptArguments.reward``) and their functions.
REWARD_FUNCS = {"env": env_reward, "success": success_reward, "completion": completion_reward}


def episode_reward_kwargs(records: list[dict]) -> dict[str, list[float]]:
    """The keys the reward functions read, from ``play_episodes``' records (what ``MultiTurnRollout`` returns)."""
    return {"env_reward": [r["reward"] for r in records],
            "env_success": [float(r["success"]) for r in records],
            "env_completion": [r["completion"] for r in records]}
