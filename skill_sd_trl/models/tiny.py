"""Tiny, fully offline causal LMs for tests, benchmarks and dry runs.

Nothing here touches the Hub: the tokenizer is a byte-level BPE trained in-process on a small corpus, the chat
template is TRL's own ``qwen3.jinja`` (so TRL recognises it for tool calling), and the weights are random.
"""

from __future__ import annotations

import os
from pathlib import Path

_CORPUS = [
    "You are a helpful assistant. Solve the task step by step.",
    "<answer>Up</answer> <answer>Down</answer> <answer>Left</answer> <answer>Right</answer> ||",
    "The room is 6x6. # wall, _ floor, O target, X box, P player, √ box on target, S player on target.",
    "apis.supervisor.complete_task(answer=42) print(apis.phone.login(username='a', password='b'))",
    "The quick brown fox jumps over the lazy dog. 0123456789 {}[]()<>:;,.'\"=+-*/\\|!?@#$%^&_~`",
    "success_analysis mistake_analysis golden_workflow skill reward observation action user assistant system",
]
_SPECIAL = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>", "</tool_call>"]


def build_tokenizer(vocab_size: int = 512):
    """A byte-level BPE tokenizer with Qwen3's special tokens and chat template."""
    import trl
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS * 4, trainer=trainer)
    template = (Path(trl.__file__).parent / "chat_templates" / "qwen3.jinja").read_text(encoding="utf-8")
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        chat_template=template,
    )
    return tok


def build_tiny_model(tokenizer, hidden_size: int = 16, num_layers: int = 2, seed: int = 0, arch: str = "qwen3"):
    """A random causal LM of a few thousand parameters matching ``tokenizer``."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen3Config

    torch.manual_seed(seed)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    if arch == "qwen3":
        config = Qwen3Config(head_dim=hidden_size // 2, **common)
    elif arch == "llama":
        config = LlamaConfig(**common)
    elif arch == "nemotron_h":  # a hybrid: a Mamba (linear-attention) layer, then an attention layer
        from transformers import NemotronHConfig

        common.pop("num_hidden_layers")
        common.pop("intermediate_size")
        config = NemotronHConfig(
            layers_block_type=["mamba", "attention"] * max(1, num_layers // 2), head_dim=hidden_size // 2,
            intermediate_size=2 * hidden_size, ssm_state_size=8, mamba_num_heads=4, mamba_head_dim=hidden_size // 4,
            n_groups=1, chunk_size=16, **common,
        )
    else:
        raise ValueError(f"arch={arch!r} is not supported; use 'qwen3', 'llama' or 'nemotron_h'.")
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def save_tiny_model(path: str | os.PathLike, hidden_size: int = 16, num_layers: int = 2, seed: int = 0,
                    arch: str = "qwen3") -> str:
    """Build a tiny tokenizer + model and save both to ``path`` (a folder ``from_pretrained`` can load)."""
    path = Path(path)
    tokenizer = build_tokenizer()
    model = build_tiny_model(tokenizer, hidden_size=hidden_size, num_layers=num_layers, seed=seed, arch=arch)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(path)
    model.save_pretrained(path)
    return str(path)
