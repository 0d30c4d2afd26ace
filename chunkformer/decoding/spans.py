"""CTC search over spans of encoder frames, shared by batch and long-form decoding.

Greedy ids are kept per frame; beam modes search spans of at most ``MAX_SPAN_FRAMES`` cut inside
the longest blank run (failing that, between two different tokens). Greedy results are unchanged
by such cuts, a recording up to ``MAX_SPAN_FRAMES`` is searched whole, and beam search and
attention rescoring memory stay bounded on hours of audio.
"""
from typing import List, Optional

import torch

from chunkformer.decoding.search import attention_rescoring, ctc_prefix_beam_search
from chunkformer.decoding.transcript import Token, Transcript, greedy_tokens

MAX_SPAN_FRAMES = 375  # 30 s of encoder frames per search span


def search(model, enc: torch.Tensor, frame_ids: List[int], mode: str, beam_size: int,
           ctc_weight: float = 0.5, reverse_weight: float = 0.0, offset: int = 0) -> List[Token]:
    """One utterance's (T', D) encoder output (and its greedy per-frame ids) → tokens."""
    blank = model.ctc.blank_id
    if mode == "ctc_greedy":
        return greedy_tokens(frame_ids, blank, offset)
    hyps = ctc_prefix_beam_search(model.ctc_log_probs(enc), beam_size, blank)
    best = 0
    if mode == "attention_rescoring" and len(hyps) > 1:
        best, _ = attention_rescoring(model.decoder, enc, hyps, model.sos, model.eos,
                                      ctc_weight, reverse_weight)
    return [Token(i, t + offset, t + offset) for i, t in zip(hyps[best].ids, hyps[best].times)]


class SpanSearch:
    """Collect CTC frames and run the chosen search on spans cut at blank frames.

    Only greedy per-frame ids are kept for the whole recording; beam modes also hold the
    encoder frames of the span being collected, and compute its log-probabilities when it is
    searched, so no (T, V) matrix is ever built for the whole audio.
    """

    def __init__(self, model, mode: str, beam_size: int, ctc_weight: float = 0.5,
                 reverse_weight: float = 0.0):
        self.model, self.mode, self.beam_size = model, mode, beam_size
        self.weights = (ctc_weight, reverse_weight)
        self.tokens, self.frame_ids = [], []
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
                          blank=self.model.ctc.blank_id)

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
        self.tokens += search(self.model, enc, ids, self.mode, self.beam_size, *self.weights,
                              offset=start)
        self.pending_start += n
