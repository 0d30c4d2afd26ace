"""Transducer searches over encoder frames (spec/rnnt.md §5), batched over utterances.

Greedy: at each frame take the argmax of the joint (first index on ties, after log-softmax
as the reference does); a token is emitted and the predictor advances on it, blank moves to
the next frame, and after ``max_symbols`` tokens on one frame the search moves on without a
blank. The predictor state advances on tokens only. :class:`GreedyState` carries the search
from one block of frames to the next, so long-form and live decoding give exactly the search
over all frames at once.
"""
import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch

MAX_SYMBOLS = 64  # symbols per frame at most (the reference's default)
LOOKAHEAD = 4  # frames the greedy search scores at once while the predictor stands still


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
                  carry: Optional[GreedyState] = None, lookahead: int = LOOKAHEAD,
                  ) -> Tuple[List[List[Tuple[int, int]]], GreedyState]:
    """Greedy search over (B, T', D) encoder frames of valid lengths (B,).

    Each utterance keeps its own frame. While its predictor stands still (blanks), the
    joint's answer on the next frames does not depend on them, so each step scores
    ``lookahead`` frames per utterance in one product and jumps to the first that emits; only
    the utterances not yet at their end are scored, and only those that emit step the
    predictor (one batched step, whatever frame each is on). The result is the frame-by-frame
    search's, without its cost on padding, finished utterances and blank runs.

    Returns:
        per utterance the emitted (token id, frame) pairs in order, and the state to go on
        with (``carry`` for the next frames of the same utterances).
    """
    if max_symbols < 1 or lookahead < 1:
        raise ValueError(f"max_symbols {max_symbols} and lookahead {lookahead} must be >= 1")
    batch, frames = enc.size(0), enc.size(1)
    device = enc.device
    carry = carry or start_greedy(predictor, batch, device)
    h, c = (s.clone() for s in carry.state)
    pred = carry.pred.clone()
    f = joint.project_encoder(enc)  # (B, T', J)
    g = joint.project_predictor(pred)  # (B, J)
    lens = lens.to(device)
    t = torch.zeros(batch, dtype=torch.long, device=device)  # each utterance's frame
    count = torch.zeros_like(t)  # symbols it has emitted on that frame
    offsets = torch.arange(lookahead, device=device)
    out: List[List[Tuple[int, int]]] = [[] for _ in range(batch)]
    blank = predictor.blank
    while True:
        rows = (t < lens).nonzero().squeeze(1)  # (A,)
        if rows.numel() == 0:
            break
        window = t[rows, None] + offsets  # (A, K) frames
        inside = window < lens[rows, None]
        logits = joint.combine(f[rows[:, None], window.clamp(max=frames - 1)], g[rows, None])
        best = logits.float().log_softmax(-1).argmax(-1)  # (A, K), first index on ties
        emits = inside & (best != blank)
        has = emits.any(1)
        skip = torch.where(has, emits.int().argmax(1), lookahead)  # blank frames before
        count[rows] = torch.where(skip > 0, 0, count[rows])
        t[rows] += skip
        if not bool(has.any()):
            continue
        rows, tokens = rows[has], best[has, skip[has]]
        for row, token, frame in zip(rows.tolist(), tokens.tolist(), t[rows].tolist()):
            out[row].append((token, frame))
        new_pred, (h[:, rows], c[:, rows]) = predictor.step(tokens, (h[:, rows], c[:, rows]))
        pred[rows] = new_pred
        g[rows] = joint.project_predictor(new_pred)
        count[rows] += 1
        capped = count[rows] >= max_symbols  # on to the next frame without a blank
        t[rows] += capped.long()
        count[rows] = torch.where(capped, 0, count[rows])
    return out, GreedyState((h, c), pred)


@dataclass
class BeamHypothesis:
    """A labelling in the transducer beam: ``score`` is its log-probability summed over the
    alignments the search merged into it; ``bonus`` what a decoding bias added, with its
    ``bias_state``; ``pred`` / ``g`` / ``state``: the predictor after the labelling."""

    ids: Tuple[int, ...]
    times: Tuple[int, ...]
    score: float
    pred: torch.Tensor  # (P,)
    g: torch.Tensor  # (J,) projected for the joint
    state: Tuple[torch.Tensor, torch.Tensor]  # (layers, H) each
    bonus: float = 0.0
    bias_state: object = None

    @property
    def rank(self) -> float:
        return self.score + self.bonus


def _log_add(a: float, b: float) -> float:
    hi, lo = max(a, b), min(a, b)
    return hi + math.log1p(math.exp(lo - hi)) if lo > -math.inf else hi


def start_beam(predictor, joint, device=None, bias=None) -> List[BeamHypothesis]:
    """The beam before the first frame: the empty labelling."""
    start = start_greedy(predictor, 1, device)
    return [BeamHypothesis((), (), 0.0, start.pred[0], joint.project_predictor(start.pred)[0],
                           (start.state[0][:, 0], start.state[1][:, 0]), 0.0,
                           bias.initial() if bias is not None else None)]


@torch.no_grad()
def beam_search(predictor, joint, enc: torch.Tensor, beam_size: int = 10,
                max_symbols: int = MAX_SYMBOLS, carry: Optional[List[BeamHypothesis]] = None,
                bias=None, first_frame: int = 0) -> List[BeamHypothesis]:
    """Transducer beam search over one utterance's (T', D) frames, several symbols per frame.

    Per frame, up to ``max_symbols`` steps: every hypothesis still on the frame is extended by
    blank and by every token; of all these extensions the ``beam_size`` best (by score plus
    bias; a blank before a token when equal) are kept: blank ones have finished the frame,
    token ones take another step. Hypotheses at the cap finish without a blank, as in greedy
    search. A token extension that cannot beat the ``beam_size``-th finished hypothesis is
    dropped (without a bias, extending only loses probability). Finished hypotheses with the
    same labelling are merged (their probabilities added, the sum over alignments) and the
    ``beam_size`` best go to the next frame. With ``beam_size`` 1 this is exactly greedy
    search. ``carry``: the beam returned for earlier
    frames of the same utterance (``first_frame``: their count, for token times).

    Returns:
        the beam after the last frame, best (score + bonus) first.
    """
    blank = predictor.blank
    beam = carry or start_beam(predictor, joint, enc.device, bias)
    f = joint.project_encoder(enc)  # (T', J)
    for t in range(enc.size(0)):
        finished: dict = {}
        active = beam
        for step in range(max_symbols):
            if not active:
                break
            logp = joint.combine(f[t], torch.stack([h.g for h in active])).float()
            logp = logp.log_softmax(-1)  # (A, V)
            top_lp, top_ids = logp.topk(min(beam_size, logp.size(1)), dim=-1)
            blank_lp = logp[:, blank].tolist()
            candidates = []  # (rank, order, hypothesis index, token, score)
            for a, (h, lps, ids) in enumerate(zip(active, top_lp.tolist(), top_ids.tolist())):
                candidates.append((h.rank + blank_lp[a], 0, a, blank, h.score + blank_lp[a]))
                candidates += [(h.rank + lp, 1 + token, a, token, h.score + lp)
                               for lp, token in zip(lps, ids) if token != blank]
            candidates.sort(key=lambda c: (-c[0], c[2], c[1]))
            extend = []
            for rank, _, a, token, score in candidates[:beam_size]:
                h = active[a]
                if token == blank:
                    _finish(finished, BeamHypothesis(h.ids, h.times, score, h.pred, h.g,
                                                     h.state, h.bonus, h.bias_state))
                elif bias is not None or rank > _floor(finished, beam_size):
                    extend.append((h, token, score))
            active = _advance(predictor, joint, extend, t + first_frame, bias)
        for h in active:  # at the cap: on to the next frame without a blank
            _finish(finished, h)
        beam = sorted(finished.values(), key=lambda h: -h.rank)[:beam_size]
    return beam


def _floor(finished: dict, beam_size: int) -> float:
    """The rank a hypothesis still on the frame must beat to matter: once ``beam_size``
    have finished, the worst of them (a longer labelling only loses probability)."""
    if len(finished) < beam_size:
        return -math.inf
    return sorted((h.rank for h in finished.values()), reverse=True)[beam_size - 1]


def _finish(finished: dict, h: BeamHypothesis):
    known = finished.get(h.ids)
    if known is None:
        finished[h.ids] = h
    else:
        known.score = _log_add(known.score, h.score)


def _advance(predictor, joint, extend, frame: int, bias) -> List[BeamHypothesis]:
    """The predictor (one batched step) and bias after each (hypothesis, token)."""
    if not extend:
        return []
    tokens = torch.tensor([token for _, token, _ in extend], device=extend[0][0].pred.device)
    h0 = torch.stack([h.state[0] for h, _, _ in extend], 1)
    c0 = torch.stack([h.state[1] for h, _, _ in extend], 1)
    pred, (h1, c1) = predictor.step(tokens, (h0, c0))
    g = joint.project_predictor(pred)
    out = []
    for i, (h, token, score) in enumerate(extend):
        bonus, bias_state = h.bonus, h.bias_state
        if bias is not None:
            delta, bias_state = bias.extend(h.bias_state, token)
            bonus += delta
        out.append(BeamHypothesis(h.ids + (token,), h.times + (frame,), score, pred[i], g[i],
                                  (h1[:, i], c1[:, i]), bonus, bias_state))
    return out
