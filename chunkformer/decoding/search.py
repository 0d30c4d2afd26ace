"""CTC search over one utterance, and attention rescoring of its n-best list.

* ``ctc_greedy``: best path (Graves et al. 2006, "Connectionist Temporal Classification").
* ``ctc_prefix_beam_search``: prefix beam search in log space (Hannun et al. 2014,
  arXiv:1408.2873), as WeNet's ``ctc_prefix_beam_search`` with peak-frame timestamps, but with
  shared-prefix storage, token pruning and blank-frame skipping so that an hour of frames
  takes seconds and memory bounded by the n-best output, never T x V Python objects.
* ``attention_rescoring``: re-rank hypotheses with a (bi)transformer decoder (WeNet U2/U2++).
"""
import heapq
import math
import weakref
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from chunkformer.heads.attention_decoder import reverse_padded, teacher_forcing

NEG_INF = float("-inf")


@dataclass(frozen=True)
class Hypothesis:
    """A labelling: ``ids`` (tokens), ``score`` (its CTC log-probability), ``times`` (frame of
    each token, same length as ``ids``) and ``bias``: what a :class:`DecodingBias` added
    (hotword bonuses, weighted LM score and word bonuses; 0 without one). Searches rank by
    ``total`` = score + bias."""

    ids: Tuple[int, ...]
    score: float
    times: Tuple[int, ...]
    bias: float = 0.0

    @property
    def total(self) -> float:
        return self.score + self.bias


def ctc_greedy(log_probs: torch.Tensor, blank: int = 0) -> Tuple[List[int], List[int]]:
    """Best path: per-frame argmax, merge consecutive repeats, drop blanks.

    Args:
        log_probs: (T, V) per-frame log-probabilities.
    Returns:
        ids and, for each, the frame where its run of repeats starts.
    """
    best = log_probs.argmax(dim=-1)  # (T,)
    starts = torch.ones_like(best, dtype=torch.bool)
    starts[1:] = best[1:] != best[:-1]
    keep = starts & (best != blank)
    return best[keep].tolist(), keep.nonzero().squeeze(1).tolist()


def _logaddexp(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    if b == NEG_INF:
        return a
    return a + math.log1p(math.exp(b - a))


class _Prefix:
    """A node of the prefix trie. Nodes are unique per label sequence (``child`` looks up before
    it creates), so (parent, token) identifies a prefix. Children are held through weak
    references, so pruned branches are freed and only the beam's ancestry stays in memory."""

    __slots__ = ("token", "parent", "children", "bonus", "state", "__weakref__")

    def __init__(self, token: int, parent: Optional["_Prefix"], bonus: float = 0.0,
                 state=None):
        self.token, self.parent, self.children = token, parent, {}
        self.bonus, self.state = bonus, state  # the bias earned so far and its state

    def existing(self, token: int) -> Optional["_Prefix"]:
        ref = self.children.get(token)
        return ref() if ref is not None else None

    def child(self, token: int, bonus: float = 0.0, state=None) -> "_Prefix":
        node = self.existing(token)
        if node is None:
            node = _Prefix(token, self, bonus, state)
            self.children[token] = weakref.ref(node)
        return node

    def ids(self) -> Tuple[int, ...]:
        out, node = [], self
        while node.parent is not None:
            out.append(node.token)
            node = node.parent
        return tuple(reversed(out))


class _Beam:
    """Scores of one prefix after the current frame.

    ``pb`` / ``pnb``: total log-probability of the paths ending in blank / in the last token.
    ``vb`` / ``vnb``: log-probability of the best such path, ``tb`` / ``tnb`` its token times
    as a linked list ``(time, rest)``, and ``peak`` the log-probability at the last token's
    time on the ``vnb`` path (a token's time is the frame of its highest posterior).
    ``bonus`` / ``state``: the bias the prefix has earned and the bias's state after it."""

    __slots__ = ("parent", "token", "node", "pb", "pnb", "vb", "vnb", "tb", "tnb", "peak",
                 "bonus", "state")

    def __init__(self, parent, token, node=None, bonus: float = 0.0, state=None):
        self.parent, self.token, self.node = parent, token, node
        self.pb = self.pnb = self.vb = self.vnb = NEG_INF
        self.tb = self.tnb = None
        self.peak = NEG_INF
        self.bonus, self.state = bonus, state

    def total(self) -> float:
        return _logaddexp(self.pb, self.pnb)

    def rank(self) -> float:
        return _logaddexp(self.pb, self.pnb) + self.bonus

    def add_blank(self, src: "_Beam", lp: float):
        self.pb = _logaddexp(self.pb, _logaddexp(src.pb, src.pnb) + lp)
        v, times = (src.vb, src.tb) if src.vb >= src.vnb else (src.vnb, src.tnb)
        if v + lp > self.vb:
            self.vb, self.tb = v + lp, times

    def add_repeat(self, src: "_Beam", lp: float, t: int):
        """The last token continues (no blank in between): same prefix."""
        self.pnb = _logaddexp(self.pnb, src.pnb + lp)
        if src.vnb + lp > self.vnb:
            self.vnb, self.tnb, self.peak = src.vnb + lp, src.tnb, src.peak
            if lp > self.peak:
                self.tnb, self.peak = (t, src.tnb[1]), lp

    def add_token(self, p: float, v: float, times, lp: float, t: int):
        """A new token emitted at frame t after paths of total ``p``, best ``v``."""
        self.pnb = _logaddexp(self.pnb, p + lp)
        if v + lp > self.vnb:
            self.vnb, self.tnb, self.peak = v + lp, (t, times), lp


def _same(nxt: dict, b: _Beam) -> _Beam:
    """The next frame's scores of b's own prefix, created empty on first use."""
    beam = nxt.get((b.parent, b.token))
    if beam is None:
        beam = nxt[(b.parent, b.token)] = _Beam(b.parent, b.token, b.node, b.bonus, b.state)
    return beam


def _longer(nxt: dict, b: _Beam, token: int, bias) -> _Beam:
    """The next frame's scores of b's prefix + ``token``, created empty on first use (with
    the bias it earns, looked up on the trie when the prefix was seen before)."""
    beam = nxt.get((b.node, token))
    if beam is None:
        bonus, state = b.bonus, None
        if bias is not None:
            known = b.node.existing(token)
            if known is not None:
                bonus, state = known.bonus, known.state
            else:
                delta, state = bias.extend(b.state, token)
                bonus += delta
        beam = nxt[(b.node, token)] = _Beam(b.node, token, None, bonus, state)
    return beam


def _extend(beam: List[_Beam], tokens: Sequence[int], lps: Sequence[float], t: int,
            blank: int, bias=None) -> List[_Beam]:
    """All one-frame extensions of ``beam`` by the frame's candidate tokens; every returned
    prefix has a finite score."""
    nxt = {}
    for b in beam:
        for tok, lp in zip(tokens, lps):
            if tok == blank:
                _same(nxt, b).add_blank(b, lp)
                continue
            if tok == b.token:  # (never true for the empty prefix, whose token is blank)
                if b.pnb > NEG_INF:
                    _same(nxt, b).add_repeat(b, lp, t)
                if b.pb == NEG_INF:
                    continue
                p, v, times = b.pb, b.vb, b.tb  # a repeat after a blank is a new token
            elif b.vb >= b.vnb:
                p, v, times = b.total(), b.vb, b.tb
            else:
                p, v, times = b.total(), b.vnb, b.tnb
            _longer(nxt, b, tok, bias).add_token(p, v, times, lp, t)
    return list(nxt.values())


def _skip_blanks(beam: List[_Beam], lp: float):
    """A run of frames whose only candidate is blank, of total log-probability ``lp``: every
    path emits blank there (merging the blank- and token-ending scores of each prefix)."""
    for b in beam:
        b.pb = b.total() + lp
        if b.vnb > b.vb:
            b.vb, b.tb = b.vnb, b.tnb
        b.vb += lp
        b.pnb = b.vnb = NEG_INF
        b.tnb = None


def _runs(flags: np.ndarray):
    """(start, end, flag) for each run of equal values in the bool array ``flags``."""
    bounds = [0, *(np.flatnonzero(flags[1:] != flags[:-1]) + 1).tolist(), len(flags)]
    for start, end in zip(bounds[:-1], bounds[1:]):
        yield start, end, bool(flags[start])


class PrefixBeamSearch:
    """CTC prefix beam search, frame block by frame block, best first.

    Pruning: a frame extends the prefixes only with its ``beam_size`` most likely tokens, and of
    those only the ones with probability ≥ 1 - ``prune_threshold`` (the most likely one always
    stays); the ``beam_size`` prefixes of highest rank survive each frame. With the default
    0.999, a frame whose blank probability is ≥ ~0.999 has blank as its only candidate; runs of
    such frames, most of the frames of real speech, cost one O(beam) update in all, which is
    what makes hours of audio take seconds. ``prune_threshold`` ≥ 1 keeps every one of the top
    tokens (exact search for ``beam_size`` ≥ V). Prefixes share storage in a trie: memory is
    at most O(beam × output length), the size of the n-best list itself.

    ``bias`` (a :class:`~chunkformer.decoding.bias.DecodingBias`, optional) adds hotword
    bonuses and word-level LM scores as tokens are emitted: prefixes are ranked by CTC
    log-probability + bias, and :meth:`hypotheses` adds the bias's end-of-hypothesis term.

    Feeding the frames in blocks (``advance``) gives exactly the result of one call with all
    of them, so a live stream searches each chunk as it arrives; ``first_frame`` numbers the
    first frame (token times count from it).
    """

    def __init__(self, beam_size: int = 10, blank: int = 0, prune_threshold: float = 0.999,
                 bias=None, first_frame: int = 0):
        self.beam_size, self.blank, self.bias = beam_size, blank, bias
        self.prune_threshold = prune_threshold
        self.floor = math.log(1.0 - prune_threshold) if prune_threshold < 1.0 else NEG_INF
        self.root = _Prefix(blank, None, 0.0, bias.initial() if bias is not None else None)
        empty = _Beam(None, blank, self.root, 0.0, self.root.state)
        empty.pb = empty.vb = 0.0
        self.beam = [empty]  # the empty prefix: (parent, token) = (None, blank)
        self.frames = first_frame  # the frame index the next advance starts at (token times)

    def advance(self, log_probs: torch.Tensor):
        """Search (n, V) log-probabilities of the next n frames."""
        log_probs = log_probs.detach().float().cpu()
        if log_probs.size(0) == 0:
            return
        top_lps, top_ids = log_probs.topk(min(self.beam_size, log_probs.size(1)), dim=-1)
        counts = (top_lps >= self.floor).sum(-1).clamp(min=1)  # (n,) candidates per frame
        blank_only = ((counts == 1) & (top_ids[:, 0] == self.blank)).numpy()
        # numpy, not tensors, in the frame loop: per-frame tensor indexing would dominate
        counts, top_ids, top_lps = counts.numpy(), top_ids.numpy(), top_lps.numpy()
        blank_cum = np.concatenate([[0.0], log_probs[:, self.blank].double().cumsum(0).numpy()])
        beam, offset = self.beam, self.frames
        for start, end, skip in _runs(blank_only):
            if skip:
                _skip_blanks(beam, float(blank_cum[end] - blank_cum[start]))
                continue
            for t in range(start, end):
                c = counts[t]
                candidates = _extend(beam, top_ids[t, :c].tolist(), top_lps[t, :c].tolist(),
                                     t + offset, self.blank, self.bias)
                beam = heapq.nlargest(self.beam_size, candidates, key=_Beam.rank)
                for b in beam:
                    if b.node is None:
                        b.node = b.parent.child(b.token, b.bonus, b.state)
        self.beam = beam
        self.frames += log_probs.size(0)

    inputs = "log_probs"  # what a live stream feeds it (see chunkformer.streaming.stream)
    eager = False  # fed lazily: when a result is read

    def restart(self, first_frame: int) -> "PrefixBeamSearch":
        """A fresh search from frame ``first_frame`` on (after a live stream's endpoint)."""
        return PrefixBeamSearch(self.beam_size, self.blank, self.prune_threshold, self.bias,
                                first_frame)

    def hypotheses(self) -> List[Hypothesis]:
        """The current n-best, best ``total`` first, each ended (the bias's closing term
        added); the search itself can go on."""
        hyps = [_hypothesis(b, self.bias) for b in self.beam]
        return sorted(hyps, key=lambda h: h.total, reverse=True)


def ctc_prefix_beam_search(log_probs: torch.Tensor, beam_size: int = 10, blank: int = 0,
                           prune_threshold: float = 0.999, bias=None) -> List[Hypothesis]:
    """:class:`PrefixBeamSearch` over one utterance's (T, V) log-probabilities.

    Returns:
        up to ``beam_size`` hypotheses, best first; ``score`` is the CTC log-probability of
        the labelling, ``bias`` what ``bias`` added, ``times`` the peak frame of each token on
        the labelling's best path.
    """
    search = PrefixBeamSearch(beam_size, blank, prune_threshold, bias)
    search.advance(log_probs)
    return search.hypotheses()


def _hypothesis(b: _Beam, bias) -> Hypothesis:
    times, cell = [], b.tb if b.vb >= b.vnb else b.tnb
    while cell is not None:
        times.append(cell[0])
        cell = cell[1]
    end = bias.finish(b.state) if bias is not None else 0.0
    return Hypothesis(b.node.ids(), b.total(), tuple(reversed(times)), b.bonus + end)


def _padded(hyps: Sequence[Sequence[int]], device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Id lists → (N, max U) padded with 0 and lengths (N,)."""
    ys = torch.zeros(len(hyps), max(1, max(len(h) for h in hyps)), dtype=torch.long)
    for i, h in enumerate(hyps):
        ys[i, :len(h)] = torch.tensor(h, dtype=torch.long)
    return ys.to(device), torch.tensor([len(h) for h in hyps], device=device)


def _sequence_scores(logits: torch.Tensor, targets: torch.Tensor,
                     lens: torch.Tensor) -> torch.Tensor:
    """Sum over valid positions of log-softmax(logits) at the targets: (N, U, V) → (N,)."""
    lp = logits.float().log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    valid = torch.arange(targets.size(1), device=lens.device) < lens.unsqueeze(1)
    return (lp * valid).sum(-1)


@torch.no_grad()
def attention_rescoring(decoder: torch.nn.Module, memory: torch.Tensor,
                        hyps: Sequence[Hypothesis], sos: int, eos: int,
                        ctc_weight: float = 0.5,
                        reverse_weight: float = 0.0) -> Tuple[int, List[float]]:
    """Re-rank CTC hypotheses with an attention decoder, all in one batched decoder call.

    score = att + ctc_weight * hyp.score + hyp.bias, where att = log P(ids + eos | sos + ids) from the
    left-to-right decoder, or (1 - reverse_weight) * left + reverse_weight * right when the
    decoder also scores the reversed ids right to left (``BiTransformerDecoder``, WeNet
    convention). Put the decoder in eval mode first.

    Args:
        decoder: ``TransformerDecoder`` or ``BiTransformerDecoder``.
        memory: (T, D) encoder output of the utterance.
        hyps: n-best list, e.g. from ``ctc_prefix_beam_search`` (``score`` is the CTC score).
    Returns:
        index of the best hypothesis and the combined score of each.
    """
    if not hyps:
        raise ValueError("attention_rescoring needs at least one hypothesis")
    ys, ys_lens = _padded([h.ids for h in hyps], memory.device)
    ys_in, targets, lens = teacher_forcing(ys, ys_lens, sos, eos)
    r_ys_in, r_targets, _ = teacher_forcing(reverse_padded(ys, ys_lens), ys_lens, sos,
                                                    eos)
    n = len(hyps)
    mem = memory.unsqueeze(0).expand(n, -1, -1)  # (N, T, D)
    mem_lens = torch.full((n,), memory.size(0), dtype=torch.long, device=memory.device)
    logits, r_logits = decoder(mem, mem_lens, ys_in, lens, r_ys_in, reverse_weight)
    att = _sequence_scores(logits, targets, lens)
    if r_logits is not None:
        att = (1.0 - reverse_weight) * att + reverse_weight * _sequence_scores(
            r_logits, r_targets, lens)
    ctc = torch.tensor([h.score for h in hyps], device=att.device)
    bias = torch.tensor([h.bias for h in hyps], device=att.device)
    scores = (att + ctc_weight * ctc + bias).tolist()
    return max(range(n), key=scores.__getitem__), scores
