"""skill-sd-trl: Skill-Conditioned Self-Distillation (Skill-SD) for multi-turn LLM agents, on Hugging Face TRL.

Top-level names are imported lazily, so that light modules (environments, skills) load without torch/TRL.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "SkillSDConfig": ".method.config",
    "SkillSDTrainer": ".method.trainer",
    "sdl_per_token": ".method.losses",
    "masked_mean": ".method.losses",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
