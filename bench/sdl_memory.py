"""Extra memory of the dense SDL estimator over the sampled one, in the student's loss pass (forward + backward).

The sampled estimator (``rho_k3``) reads the labels' log-probs from TRL's fused LM head, which never materializes the
logits. The dense estimator (``sdl_estimator='dense'``) needs the student's log-probs over a support at every
completion position, with gradient, so its loss pass keeps the logits of those positions (float32) for the backward.
This script measures that difference on CPU with a small Qwen3-style model whose vocabulary is enlarged to a real
one (Qwen3: 151,936), for a given micro-batch (rows × completion tokens).

Each variant runs in a fresh subprocess (peak RSS is a high-water mark); the peak is reset through
``/proc/self/clear_refs`` right before the loss pass and read from ``VmHWM`` after its backward, relative to the RSS
just before (model, optimizer-free weights and inputs already built). The teacher's side (its top-k, carried in the
batch) is not part of the loss pass and is stated separately in docs/method.md.

Run from the repository root (never part of the test suite)::

    PYTHONPATH=. OMP_NUM_THREADS=2 python bench/sdl_memory.py --vocab 151936 --rows 4 --completion 128 256
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def measure(variant: str, vocab: int, rows: int, completion: int, prompt: int, topk: int, hidden: int) -> dict:
    """Peak RSS increase (bytes) of one loss pass of ``variant`` ('sampled' or 'dense')."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from skill_sd_trl.method.dense import StudentDense
    from skill_sd_trl.method.losses import dense_sdl_per_token, dense_support, sdl_per_token

    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=hidden // 4, tie_word_embeddings=False)
    model = Qwen3ForCausalLM(config).float().train()
    add_fused_lm_head(model, temperature=1.0, outputs=("log_probs", "entropy"))
    g = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, vocab, (rows, prompt + completion), generator=g)
    attention_mask = torch.ones_like(input_ids)
    completion_ids = input_ids[:, -completion:]
    teacher = -torch.rand(rows, completion, generator=g) * 5
    topk_ids = torch.randint(0, vocab, (rows, completion, topk), generator=g)
    topk_logps = -torch.rand(rows, completion, topk, generator=g) * 5 - 5
    tail = torch.full((rows, completion), -0.1)
    support, valid, teacher_support = dense_support(completion_ids, teacher, topk_ids, topk_logps)

    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark
    before = _status_kb("VmRSS")
    if variant == "sampled":
        labels = input_ids.clone()
        labels[:, :-completion] = -100
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True)
        logps = out.log_probs[:, -completion:]
        loss = sdl_per_token(logps, logps.detach(), teacher).mean()
    else:
        student = StudentDense(support, 1.0, entropy_grad=False)
        logps, _, _ = student.padded_pass(model, input_ids, attention_mask, completion, None, False,
                                          _nullcontext)
        loss = dense_sdl_per_token(student.support_logps, teacher_support, valid, tail)[0].mean()
    loss.backward()
    peak = _status_kb("VmHWM")
    return {"variant": variant, "vocab": vocab, "rows": rows, "completion": completion, "positions": rows * completion,
            "peak_increase_bytes": (peak - before) * 1024}


def _nullcontext():
    import contextlib

    return contextlib.nullcontext()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--completion", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--topk", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one measurement in this process
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(measure(args.variant, args.vocab, args.rows, args.completion[0], args.prompt, args.topk,
                                 args.hidden)))
        return
    rows = []
    for completion in args.completion:
        for variant in ("sampled", "dense"):
            cmd = [sys.executable, __file__, "--variant", variant, "--vocab", str(args.vocab), "--rows", str(args.rows),
                   "--completion", str(completion), "--prompt", str(args.prompt), "--topk", str(args.topk),
                   "--hidden", str(args.hidden)]
            result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO).stdout)
            rows.append(result)
            print(json.dumps(result), file=sys.stderr)
    print(f"| positions (rows × tokens) | sampled peak (MiB) | dense peak (MiB) | extra (MiB) | extra bytes / position "
          f"/ V (V = {args.vocab}) |")
    print("|---|---|---|---|---|")
    for i in range(0, len(rows), 2):
        sampled, dense = rows[i], rows[i + 1]
        extra = dense["peak_increase_bytes"] - sampled["peak_increase_bytes"]
        print(f"| {sampled['positions']} ({sampled['rows']} × {sampled['completion']}) | "
              f"{sampled['peak_increase_bytes'] / 2**20:.0f} | {dense['peak_increase_bytes'] / 2**20:.0f} | "
              f"{extra / 2**20:.0f} | {extra / sampled['positions'] / args.vocab:.1f} |")


if __name__ == "__main__":
    main()
