"""Transducer searches over encoder frames (spec/rnnt.md §5), batched over utterances.

Greedy: at each frame take the argmax of the joint (first index on ties, after log-softmax
as the reference does); a token is emitted and the predictor advances on it, blank moves to
the next frame, and after ``max_symbols`` tokens on one frame the search moves on without a
blank. The predictor state advances on tokens only. :class:`GreedyState` carries the search
from one block of frames to the next, so long-form and live decoding give exactly the search
over all frames at once.
"""
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch

MAX_SYMBOLS = 64  # symbols per frame at most (the reference's default)


@dataclass
class GreedyState:
    """Where B searches stand: the predictor's state and output after each one's history."""

    state: Tuple[torch.Tensor, torch.Tensor]  # (layers, B, H) each
    pred: torch.Tensor  # (B, P)


def start_greedy(predictor, batch: int, device=None) -> GreedyState:
    """The predictor having consumed only its start symbol (blank), for B searches."""
    state = predictor.initial_state(batch, device)
    blank = torch.full((batch,), predictor.blank, dtype=torch.long, device=device)
    pred, state = predictor.step(blank, state)
    return GreedyState(state, pred)


@torch.no_grad()
def greedy_search(predictor, joint, enc: torch.Tensor, lens: torch.Tensor,
                  max_symbols: int = MAX_SYMBOLS,
                  carry: Optional[GreedyState] = None,
                  ) -> Tuple[List[List[Tuple[int, int]]], GreedyState]:
    """Greedy search over (B, T', D) encoder frames of valid lengths (B,).

    Returns:
        per utterance the emitted (token id, frame) pairs in order, and the state to go on
        with (``carry`` for the next frames of the same utterances).
    """
    batch, frames = enc.size(0), enc.size(1)
    device = enc.device
    carry = carry or start_greedy(predictor, batch, device)
    h, c = carry.state
    pred = carry.pred
    f = joint.project_encoder(enc)  # (B, T', J)
    g = joint.project_predictor(pred)  # (B, J)
    out: List[List[Tuple[int, int]]] = [[] for _ in range(batch)]
    blank = predictor.blank
    for t in range(frames):
        active = t < lens  # (B,)
        for _ in range(max_symbols):
            if not bool(active.any()):
                break
            logp = joint.combine(f[:, t], g).float().log_softmax(-1)
            best = logp.argmax(-1)  # (B,) first index on ties
            emit = active & (best != blank)
            if not bool(emit.any()):
                break
            rows = emit.nonzero().squeeze(1)
            for row, token in zip(rows.tolist(), best[rows].tolist()):
                out[row].append((token, t))
            new_pred, (new_h, new_c) = predictor.step(best[rows], (h[:, rows], c[:, rows]))
            h, c = h.clone(), c.clone()
            h[:, rows], c[:, rows] = new_h, new_c
            pred = pred.clone()
            pred[rows] = new_pred
            g = g.clone()
            g[rows] = joint.project_predictor(new_pred)
            active = emit
    return out, GreedyState((h, c), pred)
