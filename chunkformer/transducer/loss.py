"""The RNN-T loss (spec/rnnt.md §7) with ``torchaudio.functional.rnnt_loss`` on a two-symbol
lattice, the joint evaluated whole or in memory-bounded time chunks.

The loss of an utterance depends on the joint's log-softmax at each lattice node (t, u) only
through two numbers: the blank's log-probability and the next target's. We take those two from
the joint's logits (B, t, U + 1, V) → (B, t, U + 1, 2) and let ``rnnt_loss`` score the
lattice on a two-symbol alphabet (blank, "the next target"), log-softmax already applied.
Value and gradients are those of ``rnnt_loss`` on the whole (B, T', U + 1, V) logits with its
fused log-softmax (tested), in the same memory, at 1.5x (V = 6992) to 2.4-3x (V = 300) its speed
on CPU: its kernel walks the V scores of every node one by one, here a dense log-sum-exp and
gather do that work (``bench/rnnt_loss_memory.py``).

``time_chunk`` bounds the memory: the joint runs on ``time_chunk`` frames at a time under
activation checkpointing and keeps only the two (B, chunk, U + 1) slices, so the V-wide
logits are never held for more than one chunk, in the forward or the backward pass: long
utterances and large vocabularies train in bounded memory, for a second run of the joint.
"""
from typing import Optional

import torch
import torchaudio.functional as AF
from torch.utils.checkpoint import checkpoint


def _targets(ys: torch.Tensor, ys_lens: torch.Tensor) -> torch.Tensor:
    """(B, U) padded targets → int32 with padding set to 0 (blank), as rnnt_loss wants."""
    valid = torch.arange(ys.size(1), device=ys.device) < ys_lens.unsqueeze(1)
    return torch.where(valid, ys, torch.zeros_like(ys)).int()


class _LogProbsAt(torch.autograd.Function):
    """(…, V) logits, (…, K) indices → (…, K) log-softmax values at the indices, holding only
    the logits and their log-sum-exp for the backward pass (log-softmax then gather would
    hold a V-wide output and build a V-wide gradient for each of the two ops)."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        lse = logits.logsumexp(-1, keepdim=True)
        ctx.save_for_backward(logits, lse, index)
        return logits.gather(-1, index) - lse

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, lse, index = ctx.saved_tensors
        out = (logits - lse).exp_().mul_(-grad.sum(-1, keepdim=True))  # softmax · -Σ grad
        return out.scatter_add_(-1, index, grad), None


def _node_terms(joint, f: torch.Tensor, g: torch.Tensor, next_tokens: torch.Tensor,
                blank: int) -> torch.Tensor:
    """Projected encoder (B, t, J) and predictor (B, U+1, J) outputs → (B, t, U+1, 2):
    log p(blank) and log p(next target) at each node (the last row's "next" is unused)."""
    logits = joint.combine(f.unsqueeze(2), g.unsqueeze(1)).float()
    index = torch.stack([torch.full_like(next_tokens, blank), next_tokens], dim=-1)
    return _LogProbsAt.apply(logits, index[:, None].expand(-1, logits.size(1), -1, -1))


def rnnt_loss(joint, enc: torch.Tensor, enc_lens: torch.Tensor, pred: torch.Tensor,
              ys: torch.Tensor, ys_lens: torch.Tensor, blank: int = 0,
              time_chunk: Optional[int] = None) -> torch.Tensor:
    """Per-utterance RNN-T negative log-likelihood (B,).

    Args:
        joint: :class:`~chunkformer.transducer.heads.TransducerJoint`.
        enc: (B, T', D) encoder output, enc_lens (B,).
        pred: (B, U + 1, P) predictor output on ``[blank] + ys``.
        ys: (B, U) padded targets, ys_lens (B,).
        time_chunk: frames per joint evaluation (None: the whole joint at once).
    """
    targets = _targets(ys, ys_lens)
    f, g = joint.project_encoder(enc), joint.project_predictor(pred)
    next_tokens = torch.cat([targets.long(), targets.new_zeros(targets.size(0), 1).long()],
                            dim=1)  # (B, U + 1)
    if time_chunk is None or time_chunk >= f.size(1):
        terms = _node_terms(joint, f, g, next_tokens, blank)
    else:
        terms = torch.cat([checkpoint(_node_terms, joint, f[:, s:s + time_chunk], g,
                                      next_tokens, blank, use_reentrant=False)
                           for s in range(0, f.size(1), time_chunk)], dim=1)
    relabelled = torch.ones_like(targets)  # every target is "the next target", symbol 1
    return AF.rnnt_loss(terms, relabelled, enc_lens.int(), ys_lens.int(), blank=0,
                        reduction="none", clamp=-1, fused_log_softmax=False)
