"""Endless long-form decoding: audio of any length, segment by segment, caches carried (spec §9).

Each segment emits ``keep`` encoder frames and reads ``rel_right`` fbank frames further, the
receptive field of N layers with right context R (``r + max(c, r)(N - 1)`` subsampled frames,
r = max(R, lorder)), so every kept frame is exactly what one chunked pass over the whole audio
would give. Attention keys/values of the last L frames and the last lorder convolution inputs of
each layer carry over. Audio is read from disk segment by segment and CTC runs per segment, so
peak memory does not grow with the length of the audio.

CTC frames are decoded in spans cut after a silence, or before ``MAX_SPAN_FRAMES`` at the last
blank frame (failing that, between two different tokens): greedy results are unchanged by such
cuts, and beam search and rescoring memory stay bounded on hours of audio.
"""
from dataclasses import dataclass
from typing import Iterator, List, Optional

import torch

from chunkformer.data.audio import FbankStream
from chunkformer.decoding.batch import check_mode, frame_budget, search
from chunkformer.decoding.transcript import Transcript, greedy_tokens
from chunkformer.encoder.subsampling import DepthwiseStridingSubsampling as Subsampling

MAX_SPAN_FRAMES = 375  # 30 s of encoder frames per search span
SPAN_SILENCE_FRAMES = 6  # blank frames that end a span early (0.48 s)


@dataclass
class Segment:
    """Fbank frames [start, stop) of one step; the first ``keep`` encoder frames are emitted
    (all of them when ``last``)."""

    start: int
    stop: int
    keep: int
    last: bool


def segment_plan(num_frames: int, chunk: int, left: int, right: int, num_blocks: int,
                 lorder: int, total_batch_duration: float) -> Iterator[Segment]:
    """The upstream segment loop. Budgets too small for one chunk (which crash upstream) are
    raised to one chunk per segment."""
    if chunk is None or chunk <= 0:
        raise ValueError("endless decoding needs chunk_size > 0 (full context cannot stream)")
    stride = Subsampling.stride
    keep = chunk * max(1, frame_budget(total_batch_duration) // chunk // stride)
    r = max(right, lorder)
    rel_right = (r + max(chunk, r) * (num_blocks - 1)) * stride
    start = 0
    while True:
        end = min(start + keep * stride + Subsampling.receptive_field - stride, num_frames)
        # upstream stops once the look-ahead reaches the end; a segment whose kept frames
        # already reach it is the last one too (upstream would run an empty one after it)
        last = start + max(rel_right, keep * stride) >= num_frames
        yield Segment(start, min(end + rel_right, num_frames), keep, last)
        if last:
            return
        start += keep * stride


def encode_long(model, stream, chunk, left, right, total_batch_duration):
    """Yield (first encoder frame index, (n, D) encoder frames) segment by segment."""
    enc_model = model.encoder
    cache, emitted = None, 0
    for seg in segment_plan(stream.num_frames, chunk, left, right, enc_model.num_blocks,
                            enc_model.lorder, total_batch_duration):
        feats = stream.read(seg.start, seg.stop).to(model.device)
        if feats.size(0) < Subsampling.receptive_field:
            return
        enc, cache = enc_model.forward_segment(feats, chunk, left, right, cache, seg.keep)
        if not seg.last:
            enc = enc[:seg.keep]
        yield emitted, enc
        emitted += enc.size(0)


class SpanSearch:
    """Collect CTC frames and run the chosen search on spans cut at blank frames."""

    def __init__(self, model, mode: str, beam_size: int):
        self.model, self.mode, self.beam_size = model, mode, beam_size
        self.tokens, self.frame_ids = [], []
        self.pending_lp, self.pending_enc, self.pending_start = [], [], 0

    def add(self, enc: torch.Tensor, log_probs: torch.Tensor):
        ids = log_probs.argmax(-1)
        self.frame_ids.extend(ids.tolist())
        if self.mode == "ctc_greedy":  # per-frame decision: no need to hold frames back
            self.pending_lp.append(ids)
        else:
            self.pending_lp.append(log_probs)
            self.pending_enc.append(enc)
        self._flush(final=False)

    def finish(self):
        self._flush(final=True)

    def _flush(self, final: bool):
        total = len(self.frame_ids) - self.pending_start
        while total > 0:
            cut = total if final else self._cut_point(total)
            if cut is None:
                return
            self._decode_span(cut)
            total -= cut

    def _cut_point(self, total: int) -> Optional[int]:
        """Frames to decode now: up to the end of a silence, else by MAX_SPAN_FRAMES at the
        last blank frame (or the last change of token, never inside one token's run);
        None to wait for more frames."""
        ids = self.frame_ids[self.pending_start:]
        blank, run = self.model.ctc.blank_id, 0
        for t, i in enumerate(ids):
            run = run + 1 if i == blank else 0
            if run >= SPAN_SILENCE_FRAMES:
                return t + 1
            if t + 1 >= MAX_SPAN_FRAMES and t + 1 < len(ids):
                cuts = [k for k in range(t, -1, -1) if ids[k] == blank] or \
                    [k for k in range(t, -1, -1) if ids[k] != ids[k + 1]]
                return cuts[0] + 1 if cuts else t + 1
        return None

    def _decode_span(self, n: int):
        lp = torch.cat(self.pending_lp)
        enc = torch.cat(self.pending_enc) if self.pending_enc else None
        if self.mode == "ctc_greedy":
            self.tokens += greedy_tokens(lp[:n].tolist(), self.model.ctc.blank_id,
                                         self.pending_start)
        else:
            self.tokens += search(self.model, lp[:n], enc[:n], self.mode, self.beam_size,
                                  offset=self.pending_start)
            self.pending_enc = [enc[n:]]
        self.pending_lp = [lp[n:]]
        self.pending_start += n


@torch.no_grad()
def decode_long(model, audio, chunk_size=64, left_context_size=128, right_context_size=128,
                total_batch_duration=1800, mode="ctc_greedy", beam_size=10,
                sample_rate=None) -> Transcript:
    """Decode one recording of any length (path or waveform) → Transcript."""
    check_mode(model, mode)
    stream = FbankStream(audio, sample_rate)
    spans = SpanSearch(model, mode, beam_size)
    for _, enc in encode_long(model, stream, chunk_size, left_context_size, right_context_size,
                              total_batch_duration):
        spans.add(enc, model.ctc_log_probs(enc))
    spans.finish()
    return Transcript(spans.tokens, model.vocab, frame_ids=spans.frame_ids,
                      blank=model.ctc.blank_id)
