"""Training segments from long recordings with a transcript: CTC forced alignment, cuts at
pauses, a score per segment.

A call-center archive holds whole calls (or rough pieces of them) with one transcript each;
a model trains on segments of a few seconds to a few tens of seconds. The recording's CTC
log-probabilities (:func:`ctc_emissions`, computed chunk by chunk, so any length fits in
bounded memory) and the transcript's tokens go through ``torchaudio.functional.forced_align``
(Viterbi over the CTC topology); tokens become words at the vocabulary's word-start marker,
each word with its first and last frame (80 ms each). :func:`cut_at_pauses` then cuts between
words at pauses of at least ``min_pause`` seconds (pauses between CTC spikes), and cuts a piece still longer than
``max_seconds`` at its longest inner pauses. A segment's score is the mean posterior of its
aligned frames (exp of their mean log-probability, 0-1): a transcript that does not match the
audio there aligns through unlikely labels and scores low. CTC spikes say which words are where,
not where their sound starts and ends (a word's last token fires 0-0.3 s before its sound ends,
varying from model to model): :func:`snap_to_speech` moves each segment's ends to the speech
onset and offset in the frame energies near them.
"""
import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torchaudio.functional as AF

from chunkformer.data.audio import FbankStream
from chunkformer.decoding.endless import encode_long

FRAME_SECONDS = 0.08  # one encoder frame: 8 fbank frames of 10 ms


@dataclass
class AlignedWord:
    """A transcript word placed in the audio: encoder frames [first, last] of its tokens and
    the mean log-probability of the aligned frames from the word's start to the next
    word's start (its tokens and the blanks after it)."""

    text: str
    first: int
    last: int
    log_prob: float
    frames: int

    @property
    def start(self) -> float:
        return self.first * FRAME_SECONDS

    @property
    def end(self) -> float:
        return (self.last + 1) * FRAME_SECONDS


@dataclass
class AlignedSegment:
    """Consecutive words cut out as one training segment (times in seconds of the audio
    aligned) and its score (mean posterior of its aligned frames)."""

    words: List[AlignedWord]
    start: float
    end: float

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)

    @property
    def score(self) -> float:
        frames = sum(w.frames for w in self.words)
        return float(torch.tensor(sum(w.log_prob * w.frames for w in self.words)
                                  / max(frames, 1)).exp())


class _EnergyTap:
    """A FbankStream that keeps the log energy (log of the summed mel powers) of every frame
    it is asked for, so the energies come from the one fbank pass the encoder makes."""

    def __init__(self, stream: FbankStream):
        self.stream, self.num_frames = stream, stream.num_frames
        self.energy = torch.zeros(stream.num_frames)

    def read(self, a: int, b: int) -> torch.Tensor:
        feats = self.stream.read(a, b)
        self.energy[a:a + feats.size(0)] = torch.logsumexp(feats.float(), -1)
        return feats


@torch.no_grad()
def ctc_emissions(model, audio, sample_rate: Optional[int] = None,
                  channel: Optional[int] = None, chunk_size: int = 0,
                  left_context_size: int = 0, right_context_size: int = 0,
                  total_batch_duration: float = 1800) -> Tuple[torch.Tensor, torch.Tensor]:
    """Path or waveform → ((T', V) float32 CTC log-probabilities, (T,) log energy of each
    10 ms fbank frame) of the whole recording: in full context (``chunk_size`` ≤ 0; attention
    memory grows with the square of the length) or chunk by chunk with caches (``endless``
    decoding's plan: bounded memory for any length)."""
    stream = _EnergyTap(FbankStream(audio, sample_rate, channel=channel))
    if chunk_size <= 0:
        feats = stream.read(0, stream.num_frames).to(model.device)
        encs = model.encoder.forward_list([feats], 0, 0, 0)
    else:
        encs = [enc for _, enc in encode_long(model, stream, chunk_size, left_context_size,
                                              right_context_size, total_batch_duration)]
    parts = [model.ctc_log_probs(enc).float().cpu() for enc in encs]
    log_probs = torch.cat(parts) if parts else torch.zeros(0, model.ctc.ctc_lo.out_features)
    return log_probs, stream.energy


class AlignmentError(ValueError):
    """The transcript cannot be aligned to the audio (too many tokens for its frames)."""


def align_words(log_probs: torch.Tensor, token_ids: Sequence[int], vocab,
                blank: int = 0) -> List[AlignedWord]:
    """Force-align token ids to (T', V) log-probabilities → the transcript's words in order.

    Raises:
        AlignmentError: the tokens (with a blank between repeated ones) need more frames than
            the audio has.
    """
    ids = list(token_ids)
    repeats = sum(a == b for a, b in zip(ids, ids[1:]))
    if not ids or len(ids) + repeats > log_probs.size(0):
        raise AlignmentError(f"{len(ids)} tokens need {len(ids) + repeats} frames, the audio "
                             f"has {log_probs.size(0)} ({log_probs.size(0) * FRAME_SECONDS:.2f} s)")
    targets = torch.tensor([ids], dtype=torch.int32)
    labels, scores = AF.forced_align(log_probs[None].float(), targets, blank=blank)
    labels, scores = labels[0], scores[0]  # (T',) aligned label and its log-prob per frame
    spans = AF.merge_tokens(labels, scores.exp(), blank=blank)
    words = vocab.ids_to_words([s.token for s in spans], [s.start for s in spans])
    out = []
    for k, (text, a, b) in enumerate(words):
        first, last = spans[a].start, spans[b].end - 1
        upto = spans[words[k + 1][1]].start if k + 1 < len(words) else log_probs.size(0)
        frame_scores = scores[first:upto]
        out.append(AlignedWord(text, first, last, float(frame_scores.mean()),
                               int(frame_scores.numel())))
    return out


SPEECH_ABOVE_FLOOR_DB = 6.0  # a frame this far above the noise floor is speech
RUN = 3  # frames (30 ms) above the threshold that start or end speech


def snap_to_speech(segments: List[AlignedSegment], energy: torch.Tensor, offset: float = 0.0,
                   margin: float = 0.05, before: float = 0.3,
                   after: float = 0.5) -> List[AlignedSegment]:
    """Move each segment's start to the speech onset and its end to the speech offset found in
    the frame energies near them: the first run of ``RUN`` frames 6 dB above the noise floor
    (the 20th percentile of the recording's frames) from ``before`` s ahead of the first word's
    first CTC frame, the last such run up to ``after`` s past the last word's last CTC frame
    (CTC spikes tell which words are where, not
    where their sound begins and ends), widened by ``margin`` s. Never into a neighbouring
    segment; a segment with no such run nearby keeps its times. ``offset``: the energies'
    start in the file."""
    if energy.numel() == 0:
        return segments
    threshold = torch.quantile(energy, 0.2) + SPEECH_ABOVE_FLOOR_DB * math.log(10) / 10
    loud = (energy > threshold).float()
    runs = torch.nn.functional.conv1d(loud[None, None], torch.ones(1, 1, RUN))[0, 0] == RUN
    frame = 0.01
    out = []
    for i, seg in enumerate(segments):
        lo = segments[i - 1].end if i else offset
        hi = segments[i + 1].start if i + 1 < len(segments) else offset + energy.numel() * frame
        first, last = seg.words[0].start + offset, seg.words[-1].end + offset  # CTC spikes
        a = max(int((max(first - before, lo) - offset) / frame), 0)
        b = min(int((first + 0.2 - offset) / frame), runs.numel())
        onsets = torch.nonzero(runs[a:b]).flatten()
        start = offset + (a + int(onsets[0])) * frame - margin if onsets.numel() else seg.start
        c = max(int((last - 0.3 - offset) / frame), 0)
        d = min(int((min(last + after, hi) - offset) / frame) - RUN + 1, runs.numel())
        ends = torch.nonzero(runs[c:max(c, d)]).flatten()
        end = (offset + (c + int(ends[-1]) + RUN) * frame + 0.015 + margin if ends.numel()
               else seg.end)
        out.append(AlignedSegment(seg.words, round(max(start, lo), 3), round(min(end, hi), 3)))
    return out


def _split_long(words: List[AlignedWord], max_seconds: float) -> List[List[AlignedWord]]:
    """Cut a run of words at its longest inner pause until every piece fits ``max_seconds``
    (a single word longer than that stays alone)."""
    if len(words) < 2 or words[-1].end - words[0].start <= max_seconds:
        return [words]
    k = max(range(1, len(words)), key=lambda i: (words[i].first - words[i - 1].last, -i))
    return _split_long(words[:k], max_seconds) + _split_long(words[k:], max_seconds)


def cut_at_pauses(words: List[AlignedWord], min_pause: float = 0.6, max_seconds: float = 20.0,
                  pad_start: float = 0.05, pad_end: float = 0.2,
                  offset: float = 0.0) -> List[AlignedSegment]:
    """Aligned words → segments cut at pauses ≥ ``min_pause`` s, none longer than
    ``max_seconds`` (cut at the longest inner pauses); each segment starts ``pad_start`` s
    before its first word's first frame and ends ``pad_end`` s after its last word's last
    frame, never past the middle of the pause to a neighbour. Times are shifted by ``offset``
    (the aligned audio's start within its file).

    A pause is measured between CTC spikes, which are sparse: a word's last token fires before
    the word's sound ends (by 0.1-0.25 s on the default recipe's model) and its first token
    about when it starts (0-0.1 s early); hence the larger end pad, and a ``min_pause`` above
    the 0.3-0.4 s that separate the spikes of neighbouring words of one sentence."""
    runs: List[List[AlignedWord]] = []
    for w in words:
        if runs and w.start - runs[-1][-1].end < min_pause:
            runs[-1].append(w)
        else:
            runs.append([w])
    pieces = [piece for run in runs for piece in _split_long(run, max_seconds)]
    segments = []
    for i, piece in enumerate(pieces):
        before = pieces[i - 1][-1].end if i else None
        after = pieces[i + 1][0].start if i + 1 < len(pieces) else None
        start = piece[0].start - pad_start
        end = piece[-1].end + pad_end
        if before is not None:
            start = max(start, (before + piece[0].start) / 2)
        if after is not None:
            end = min(end, (piece[-1].end + after) / 2)
        segments.append(AlignedSegment(piece, round(max(0.0, start) + offset, 3),
                                       round(end + offset, 3)))
    return segments
