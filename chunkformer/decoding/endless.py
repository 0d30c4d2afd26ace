"""Endless long-form decoding: audio of any length, segment by segment, caches carried (spec §9).

Each segment emits ``keep`` encoder frames and reads ``rel_right`` fbank frames further, the
receptive field of N layers with right context R (``r + max(c, r)(N - 1)`` subsampled frames,
r = max(R, lorder)), so every kept frame is exactly what one chunked pass over the whole audio
would give. Attention keys/values of the last L frames and the last lorder convolution inputs of
each layer carry over. Audio is read from disk segment by segment and CTC runs per segment, so
peak memory does not grow with the length of the audio.
CTC search runs on spans of the emitted frames (chunkformer.decoding.spans).
"""
from dataclasses import dataclass
from typing import Iterator

import torch

from chunkformer.data.audio import FbankStream
from chunkformer.decoding.batch import TRANSDUCER_MODES, check_mode, frame_budget, resolve_mode
from chunkformer.decoding.spans import SpanSearch
from chunkformer.decoding.transcript import Transcript
from chunkformer.encoder.subsampling import DepthwiseStridingSubsampling as Subsampling

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


def encode_long(model, stream, chunk, left, right, total_batch_duration, layers=False):
    """Yield (first encoder frame index, (n, D) encoder frames) segment by segment; with
    ``layers`` (first index, frames, [N block outputs (n, D)])."""
    enc_model = model.encoder
    cache, emitted = None, 0
    for seg in segment_plan(stream.num_frames, chunk, left, right, enc_model.num_blocks,
                            enc_model.lorder, total_batch_duration):
        feats = stream.read(seg.start, seg.stop).to(model.device)
        if feats.size(0) < Subsampling.receptive_field:
            return
        blocks = [] if layers else None
        enc, cache = enc_model.forward_segment(feats, chunk, left, right, cache, seg.keep,
                                               blocks)
        n = enc.size(0) if seg.last else min(seg.keep, enc.size(0))
        yield (emitted, enc[:n], [h[:n] for h in blocks]) if layers else (emitted, enc[:n])
        emitted += n


@torch.no_grad()
def decode_long(model, audio, chunk_size=64, left_context_size=128, right_context_size=128,
                total_batch_duration=1800, mode=None, beam_size=10,
                sample_rate=None, ctc_weight: float = 0.5,
                reverse_weight: float = 0.0, channel=None, bias=None) -> Transcript:
    """Decode one recording of any length (path or waveform; ``channel``: only that one) →
    Transcript (``ctc_weight`` and ``reverse_weight`` weigh attention rescoring, ``bias``
    adds hotwords / LM to the beam modes; ``mode`` None: the model's greedy mode)."""
    mode = resolve_mode(model, mode)
    check_mode(model, mode, bias)
    stream = FbankStream(audio, sample_rate, channel=channel)
    spans = model.long_search(mode, beam_size, bias) if mode in TRANSDUCER_MODES else \
        SpanSearch(model, mode, beam_size, ctc_weight, reverse_weight, bias)
    for _, enc in encode_long(model, stream, chunk_size, left_context_size, right_context_size,
                              total_batch_duration):
        spans.add(enc)
    return spans.finish()
