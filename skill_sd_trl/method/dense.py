"""Where the dense SDL estimator (``sdl_estimator='dense'``) gets its numbers: logits at the completion positions.

The fused LM head the parent patches onto the student returns the labels' log-probs only, never logits. The dense
estimator needs, at every completion position, the teacher's top-k (no grad, in its one scoring pass) and the
student's log-probs over that support (with grad, in the loss pass). Both come from the model's plain forward
(``fused_lm_head`` left off) that computes the logits of the completion positions only (``logits_to_keep``). It runs
only when the dense estimator is selected and the batch has a teacher signal: every other configuration keeps the
fused head, its numbers and its memory.

Logits are projected only where a completion token has a label (``logits_to_keep`` as a boolean position mask, as
the fused head scores only labelled positions on GPUs): padding costs nothing. A *reduce* turns them into the
per-position tensors its caller keeps: ``reduce(logits, labels, keep, rows) -> tuple of (n × ...) tensors`` for the
n = ``keep.sum()`` labelled positions (``logits`` n × V, ``labels`` n, ``keep`` rows × width); the caller puts them
back at their positions (:func:`placed`), 0 elsewhere (the fused head's convention, which the parent's ratios rely on).
``rows`` indexes the micro-batch (a slice in the padded pass, a list of rows in the shared-prompt pass).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .losses import bucket_log_probs, dense_support, sanitize_logps

#: Positions per chunk of the no-grad work on logits (teacher top-k and tail, student entropy): bounds the float32
#: temporaries to this many rows of V values.
POSITION_CHUNK = 256

SUPPORT_LOGPS, SUPPORT_IDS, TAIL_LOGP = "teacher_support_logps", "teacher_support_ids", "teacher_tail_logp"


def scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Logits in float32 (float64 stays) divided by the sampling temperature, as the fused head scales them."""
    z = logits if logits.dtype == torch.float64 else logits.float()
    return z if temperature == 1.0 else z / temperature


def labelled_logits(model, keep: torch.Tensor, **inputs):
    """``(logits, output)``: the logits (n × V) of the positions where ``keep`` (rows × sequence length) is True, by
    the model's plain forward (no fused head, no KV cache kept), and the model's output. A model that ignores the
    position mask returns every position's logits: they are selected here, the same numbers."""
    out = model(**inputs, logits_to_keep=keep, use_cache=False)
    return (out.logits[keep] if out.logits.dim() == 3 else out.logits), out


def placed(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``values`` (n × ...) put back at the True positions of ``keep`` (rows × width), 0 elsewhere; differentiable."""
    out = values.new_zeros((*keep.shape, *values.shape[1:]))
    return out.index_put(torch.nonzero(keep, as_tuple=True), values)


def logits_pass(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int, reduce: Callable,
                autocast: Callable, batch_size: int | None = None, compute_aux_loss: bool = False):
    """The parent's padded pass (same inputs and chunking by ``batch_size`` rows), with logits: ``(outputs, aux_loss)``,
    ``outputs`` being ``reduce``'s tensors (rows × ``logits_to_keep`` × ...) for the completion positions."""
    batch_size = batch_size or input_ids.size(0)
    pieces, aux = [], []
    for start in range(0, input_ids.size(0), batch_size):
        rows = slice(start, min(start + batch_size, input_ids.size(0)))
        ids, mask = input_ids[rows], attention_mask[rows]
        keep = mask[:, -logits_to_keep:].bool()  # labelled completion tokens, as the fused head's labels != -100
        positions = torch.zeros_like(mask, dtype=torch.bool)  # position i's logits score token i + 1
        positions[:, -logits_to_keep - 1:-1] = keep
        extra = {"output_router_logits": True} if compute_aux_loss else {}
        with autocast():
            logits, out = labelled_logits(model, positions, input_ids=ids, attention_mask=mask, **extra)
        if compute_aux_loss:
            aux.append(out.aux_loss)
        del out
        pieces.append(tuple(placed(v, keep) for v in reduce(logits, ids[:, -logits_to_keep:][keep], keep, rows)))
        del logits
    outputs = tuple(torch.cat(parts, dim=0) for parts in zip(*pieces, strict=True))
    return outputs, (torch.stack(aux).mean() if compute_aux_loss else None)


def _chunked(fn: Callable, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``fn`` over chunks of POSITION_CHUNK positions (first dimension) of ``tensors``, no grad; outputs concatenated."""
    with torch.no_grad():
        parts = [fn(*chunk) for chunk in zip(*(t.split(POSITION_CHUNK) for t in tensors), strict=True)]
    if not parts:  # no labelled position: fn on the empty tensors gives the right shapes
        parts = [fn(*tensors)]
    return tuple(torch.cat(p, dim=0) for p in zip(*parts, strict=True))


class _SupportLogProbs(torch.autograd.Function):
    """``log softmax(logits / T)`` at ``ids`` (n × S) and the log-normalizer (n, no grad), from logits (n × V) of any
    float dtype, in float32 (float64 stays) and in chunks of positions.

    What autograd would keep for ``z.gather(ids) − logsumexp(z)`` is the float32 logits and, in the backward, four more
    n × V buffers (the softmax, the scattered gradient, their sum, the slice's). This keeps the logits in their own
    dtype and allocates one gradient buffer: ∂/∂z_j = Σ_s g_s·[ids_s = j] − π_j·Σ_s g_s, divided by T.
    """

    @staticmethod
    def forward(ctx, logits, ids, temperature):
        dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
        out = logits.new_empty(ids.shape, dtype=dtype)
        lse = logits.new_empty(logits.shape[:-1], dtype=dtype)
        for rows in torch.arange(logits.size(0), device=logits.device).split(POSITION_CHUNK):
            z = scaled(logits[rows], temperature)
            lse[rows] = torch.logsumexp(z, dim=-1)
            out[rows] = z.gather(-1, ids[rows]) - lse[rows, None]
        ctx.save_for_backward(logits, ids, lse)
        ctx.temperature = temperature
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, grad_out, _):
        logits, ids, lse = ctx.saved_tensors
        grad = torch.empty_like(logits)
        for rows in torch.arange(logits.size(0), device=logits.device).split(POSITION_CHUNK):
            g = grad_out[rows].to(lse.dtype)
            probs = torch.exp(scaled(logits[rows], ctx.temperature) - lse[rows, None])
            chunk = probs.mul_(-g.sum(-1, keepdim=True)).scatter_add_(-1, ids[rows], g)
            grad[rows] = (chunk / ctx.temperature).to(grad.dtype)
        return grad, None, None


def support_log_probs(logits: torch.Tensor, ids: torch.Tensor, temperature: float = 1.0):
    """``(log-probs at ids, log-normalizer)`` of ``softmax(logits / temperature)``; see :class:`_SupportLogProbs`."""
    return _SupportLogProbs.apply(logits, ids, temperature)


def _entropy(logits: torch.Tensor, lse: torch.Tensor, temperature: float, requires_grad: bool) -> torch.Tensor:
    """Entropy of softmax(logits / T) per position; with gradient only when the parent's entropy bonus trains on it
    (else in chunks, no softmax of the whole batch kept)."""
    if requires_grad:
        z = scaled(logits, temperature)
        return torch.logsumexp(z, dim=-1) - (torch.softmax(z, dim=-1) * z).sum(-1)
    def entropy(chunk, chunk_lse):
        z = scaled(chunk, temperature)
        return (chunk_lse - (torch.exp(z - chunk_lse[:, None]) * z).sum(-1),)

    return _chunked(entropy, logits, lse.detach())[0]


class StudentDense:
    """The student's side of one micro-batch: the labels' log-probs and entropies the parent's loss needs, and
    ``support_logps`` (B × C × S, with grad) that L_SDL needs, from one logits forward.

    ``support_ids`` (rows × C × S): the support of each position (:func:`~.losses.dense_support`); None: the whole
    vocabulary (S = V, a log-softmax). ``entropy_grad``: whether the parent's entropy bonus is on.
    """

    def __init__(self, support_ids: torch.Tensor | None, temperature: float, entropy_grad: bool):
        self.support_ids, self.temperature, self.entropy_grad = support_ids, temperature, entropy_grad
        self.support_logps: torch.Tensor | None = None

    def reduce(self, logits, labels, keep, rows):
        if self.support_ids is None:  # the whole vocabulary (small ones): a plain log-softmax
            support = torch.log_softmax(scaled(logits, self.temperature), dim=-1)
            lse = torch.logsumexp(scaled(logits.detach(), self.temperature), dim=-1)
            logps = support.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        else:  # slot 0 of the support is the sampled token: the parent's log-prob
            support, lse = support_log_probs(logits, self.support_ids[rows, : keep.size(1)][keep], self.temperature)
            logps = support[:, 0]
        return logps, _entropy(logits, lse, self.temperature, self.entropy_grad), support

    def padded_pass(self, model, input_ids, attention_mask, logits_to_keep, batch_size, compute_aux_loss, autocast):
        """The parent's ``(log_probs, entropy, aux_loss)`` from the padded logits pass; keeps ``support_logps``."""
        (logps, entropy, self.support_logps), aux = logits_pass(model, input_ids, attention_mask, logits_to_keep,
                                                                self.reduce, autocast, batch_size, compute_aux_loss)
        return logps, entropy, aux

    def take(self, shared):
        """The parent's triple from a shared-prompt pass run with :meth:`reduce` (None stays None)."""
        if shared is None:
            return None
        logps, entropy, self.support_logps = shared
        return logps, entropy, None


def student_dense(inputs: dict, args) -> StudentDense:
    """The student's dense pass for a micro-batch carrying the teacher's support (:func:`teacher_batch_keys`)."""
    ids = inputs.get(SUPPORT_IDS)
    if ids is not None:
        ids = dense_support(inputs["completion_ids"], inputs["teacher_per_token_logps"], ids, inputs[SUPPORT_LOGPS])[0]
    return StudentDense(ids, args.temperature, args.entropy_coef != 0.0 or bool(args.use_adaptive_entropy))


def batch_dense_inputs(inputs: dict):
    """``(teacher_logps, valid, teacher_tail_logp)`` over each position's support, as :func:`~.losses.dense_sdl_per_token`
    takes them: the sampled token and the teacher's top-k with its tail, or the whole vocabulary (valid, tail None)."""
    if SUPPORT_IDS not in inputs:
        return inputs[SUPPORT_LOGPS], None, None
    _, valid, teacher = dense_support(inputs["completion_ids"], inputs["teacher_per_token_logps"], inputs[SUPPORT_IDS],
                                      inputs[SUPPORT_LOGPS])
    return teacher, valid, inputs[TAIL_LOGP]


def teacher_reduce(topk: int | None, temperature: float) -> Callable:
    """The teacher's reduce: the labels' log-probs, then either (top-k log-probs, top-k ids, log of the mass outside
    the top-k and the label) or, with ``topk`` None, the log-probs of the whole vocabulary. No grad."""

    def top(logits, labels):
        z = scaled(logits, temperature)
        ids = z.topk(min(topk, z.size(-1)), dim=-1).indices
        logps, tail = bucket_log_probs(z, torch.cat([labels.unsqueeze(-1), ids], dim=-1))
        return logps[:, 0], logps[:, 1:], ids, tail

    def full(logits, labels):
        logps = torch.log_softmax(scaled(logits, temperature), dim=-1)
        return logps.gather(-1, labels.unsqueeze(-1)).squeeze(-1), logps

    def reduce(logits, labels, keep, rows):
        return _chunked(full if topk is None else top, logits, labels)  # float32 one chunk at a time

    return reduce


def teacher_batch_keys(scores: tuple, mask: torch.Tensor) -> tuple[dict, int]:
    """The teacher's dense scores as batch keys, sanitized like its label log-probs: ``({key: tensor}, non-finite
    count)``. ``scores`` is :func:`teacher_reduce`'s output for every row; ``mask`` the action tokens."""
    keep = mask.bool()
    label, bad = _sanitized(scores[0], keep)
    support, more = _sanitized(scores[1], keep[..., None])
    keys = {"teacher_per_token_logps": label, SUPPORT_LOGPS: support}
    if len(scores) > 2:  # top-k: ids, and the tail (−inf when the support is the whole vocabulary: no bucket)
        keys[SUPPORT_IDS] = torch.where(keep[..., None], scores[2], 0)
        keys[TAIL_LOGP] = torch.where(keep, torch.nan_to_num(scores[3].float(), nan=float("-inf")), 0.0)
    return keys, bad + more


def _sanitized(values: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, int]:
    return sanitize_logps(torch.where(keep, values.float(), torch.zeros_like(values, dtype=torch.float)))


def teacher_keys_for_rows(keys: dict, rows: list[int], shape: torch.Size, topk: int | None, vocab: int,
                          device) -> dict:
    """The dense keys for the whole batch: the teacher's values on the ``rows`` it scored, zeros elsewhere — also on a
    process where it scored no row, so that every process carries the same keys and runs the same passes."""
    width = vocab if topk is None else min(topk, vocab)
    out = {SUPPORT_LOGPS: torch.zeros(*shape, width, dtype=torch.float32, device=device)}
    if topk is not None:
        out[SUPPORT_IDS] = torch.zeros(*shape, width, dtype=torch.long, device=device)
        out[TAIL_LOGP] = torch.zeros(shape, dtype=torch.float32, device=device)
    for key, value in keys.items():
        if key in out:
            out[key][rows] = value.to(out[key].dtype)
    return out


def vocab_size(model) -> int:
    """Rows of the model's output embedding (its logits' width)."""
    head = model.get_output_embeddings()
    return int(getattr(head, "out_features", None) or head.weight.shape[0])
