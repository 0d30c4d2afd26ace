"""The RNN-T loss (spec/rnnt.md §7) with ``torchaudio.functional.rnnt_loss``, whole or in
memory-bounded time chunks.

The loss of an utterance depends on the joint's log-softmax at each lattice node (t, u) only
through two numbers: the blank's log-probability and the next target's. ``time_chunk`` uses
that: the joint runs on ``time_chunk`` frames at a time under activation checkpointing, keeps
only those two (B, chunk, U + 1) slices, and the lattice is scored by ``rnnt_loss`` on a
two-symbol alphabet (blank, "the next target") with log-softmax already applied. The value
and gradients equal the whole joint's (tested), while the (B, T', U + 1, V) logits are never
held for more than one chunk, in the forward or the backward pass: long utterances and large
vocabularies train in bounded memory, at the price of running the joint twice.
"""
from typing import Optional

import torch
import torchaudio.functional as AF
from torch.utils.checkpoint import checkpoint


def _targets(ys: torch.Tensor, ys_lens: torch.Tensor) -> torch.Tensor:
    """(B, U) padded targets → int32 with padding set to 0 (blank), as rnnt_loss wants."""
    valid = torch.arange(ys.size(1), device=ys.device) < ys_lens.unsqueeze(1)
    return torch.where(valid, ys, torch.zeros_like(ys)).int()


def _node_terms(joint, f: torch.Tensor, g: torch.Tensor, next_tokens: torch.Tensor,
                blank: int) -> torch.Tensor:
    """Projected encoder (B, t, J) and predictor (B, U+1, J) outputs → (B, t, U+1, 2):
    log p(blank) and log p(next target) at each node (the last row's "next" is unused)."""
    logp = joint.combine(f.unsqueeze(2), g.unsqueeze(1)).float().log_softmax(-1)
    index = next_tokens[:, None, :, None].expand(-1, logp.size(1), -1, -1)
    return torch.cat([logp[..., blank:blank + 1], logp.gather(-1, index)], dim=-1)


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
    lengths, target_lengths = enc_lens.int(), ys_lens.int()
    if time_chunk is None or time_chunk >= enc.size(1):
        logits = joint(enc, pred).float()
        return AF.rnnt_loss(logits, targets, lengths, target_lengths, blank=blank,
                            reduction="none", clamp=-1)
    f, g = joint.project_encoder(enc), joint.project_predictor(pred)
    next_tokens = torch.cat([targets.long(), targets.new_zeros(targets.size(0), 1).long()],
                            dim=1)  # (B, U + 1)
    pieces = [checkpoint(_node_terms, joint, f[:, s:s + time_chunk], g, next_tokens, blank,
                         use_reentrant=False)
              for s in range(0, f.size(1), time_chunk)]
    terms = torch.cat(pieces, dim=1)  # (B, T', U + 1, 2)
    relabelled = torch.ones_like(targets)  # every target is "the next target", symbol 1
    return AF.rnnt_loss(terms, relabelled, lengths, target_lengths, blank=0,
                        reduction="none", clamp=-1, fused_log_softmax=False)
