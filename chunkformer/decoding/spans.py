"""CTC search over spans of encoder frames, shared by batch and long-form decoding.

Greedy ids are kept per frame; beam modes search spans of at most ``MAX_SPAN_FRAMES`` cut inside
the longest blank run (failing that, between two different tokens). Greedy results are unchanged
by such cuts, a recording up to ``MAX_SPAN_FRAMES`` is searched whole, and beam search and
attention rescoring memory stay bounded on hours of audio.

Beam modes also keep the n-best: spans are searched independently, so the n-best of the
recording is the best ``beam_size`` concatenations of one alternative per span (scores add).
"""
import heapq
from typing import List, Optional, Tuple

import torch

from chunkformer.decoding.search import Hypothesis, attention_rescoring, ctc_prefix_beam_search
from chunkformer.decoding.transcript import Token, Transcript, greedy_tokens

MAX_SPAN_FRAMES = 375  # 30 s of encoder frames per search span

Ranked = List[Tuple[float, Hypothesis]]  # (ranking score, hypothesis), best first


def search(model, enc: torch.Tensor, frame_ids: List[int], mode: str, beam_size: int,
           ctc_weight: float = 0.5, reverse_weight: float = 0.0, offset: int = 0,
           bias=None) -> Tuple[List[Token], Ranked]:
    """One utterance's (T', D) encoder output (and its greedy per-frame ids) → the best
    tokens and, for beam modes, the ranked n-best (ranking score: CTC + bias, or the
    attention-rescoring score), times shifted by ``offset``."""
    blank = model.ctc.blank_id
    if mode == "ctc_greedy":
        return greedy_tokens(frame_ids, blank, offset), []
    hyps = ctc_prefix_beam_search(model.ctc_log_probs(enc), beam_size, blank, bias=bias)
    scores = [h.total for h in hyps]
    if mode == "attention_rescoring" and len(hyps) > 1:
        _, scores = attention_rescoring(model.decoder, enc, hyps, model.sos, model.eos,
                                        ctc_weight, reverse_weight)
    ranked = sorted(((s, Hypothesis(h.ids, h.score, tuple(t + offset for t in h.times),
                                    h.bias)) for s, h in zip(scores, hyps)),
                    key=lambda sh: sh[0], reverse=True)
    best = ranked[0][1]
    return [Token(i, t, t) for i, t in zip(best.ids, best.times)], ranked


def combine_nbest(first: Ranked, second: Ranked, size: int) -> Ranked:
    """The ``size`` best concatenations of an alternative of ``first`` with one of
    ``second`` (independent spans: scores add)."""
    if not first:
        return second[:size]
    pairs = heapq.nlargest(size, ((a[0] + b[0], i, j) for i, a in enumerate(first)
                                  for j, b in enumerate(second)))
    out = []
    for score, i, j in pairs:
        a, b = first[i][1], second[j][1]
        out.append((score, Hypothesis(a.ids + b.ids, a.score + b.score, a.times + b.times,
                                      a.bias + b.bias)))
    return out


class SpanSearch:
    """Collect CTC frames and run the chosen search on spans cut at blank frames.

    Only greedy per-frame ids are kept for the whole recording; beam modes also hold the
    encoder frames of the span being collected, and compute its log-probabilities when it is
    searched, so no (T, V) matrix is ever built for the whole audio.
    """

    def __init__(self, model, mode: str, beam_size: int, ctc_weight: float = 0.5,
                 reverse_weight: float = 0.0, bias=None):
        self.model, self.mode, self.beam_size, self.bias = model, mode, beam_size, bias
        self.weights = (ctc_weight, reverse_weight)
        self.tokens, self.frame_ids, self.nbest = [], [], []
        self.pending_enc, self.pending_start = [], 0

    def add(self, enc: torch.Tensor):
        """Append (n, D) encoder frames."""
        self.frame_ids.extend(self.model.ctc.best_ids(enc).tolist())
        if self.mode != "ctc_greedy":
            self.pending_enc.append(enc)
        self._flush(final=False)

    def finish(self) -> Transcript:
        """Search what is pending; the whole recording's transcript."""
        self._flush(final=True)
        return Transcript(self.tokens, self.model.vocab, frame_ids=self.frame_ids,
                          blank=self.model.ctc.blank_id, nbest=self.nbest)

    def _flush(self, final: bool):
        total = len(self.frame_ids) - self.pending_start
        while total > 0:
            cut = total if final else self._cut_point(total)
            if cut is None:
                return
            self._decode_span(cut)
            total -= cut

    def _cut_point(self, total: int) -> Optional[int]:
        """Frames to search now, or None to wait: once MAX_SPAN_FRAMES are pending, cut in the
        middle of their longest blank run (failing that, at the last change of token, never
        inside one token's run), so recordings up to MAX_SPAN_FRAMES are searched whole."""
        if total <= MAX_SPAN_FRAMES:
            return None
        ids = self.frame_ids[self.pending_start:self.pending_start + MAX_SPAN_FRAMES + 1]
        blank, best, run = self.model.ctc.blank_id, (0, None), 0
        for t, i in enumerate(ids[:MAX_SPAN_FRAMES]):
            run = run + 1 if i == blank else 0
            if run and run >= best[0]:
                best = (run, t + 1 - run // 2)
        if best[1]:
            return best[1]
        changes = [k for k in range(MAX_SPAN_FRAMES - 1, 0, -1) if ids[k] != ids[k - 1]]
        return changes[0] if changes else MAX_SPAN_FRAMES

    def _decode_span(self, n: int):
        start = self.pending_start
        ids = self.frame_ids[start:start + n]
        enc = None
        if self.pending_enc:
            enc = torch.cat(self.pending_enc)
            self.pending_enc = [enc[n:]]
            enc = enc[:n]
        tokens, ranked = search(self.model, enc, ids, self.mode, self.beam_size, *self.weights,
                                offset=start, bias=self.bias)
        self.tokens += tokens
        if ranked:
            self.nbest = combine_nbest(self.nbest, ranked, self.beam_size)
        self.pending_start += n
