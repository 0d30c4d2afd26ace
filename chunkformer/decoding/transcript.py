"""Decoding results: tokens with encoder-frame times → text, word timings, silence segments.

Every encoder frame is ``FRAME_SHIFT`` = 8 subsampled fbank frames × 10 ms = 80 ms. A token's
time span is [first frame, last frame + 1) of the CTC frames that emitted it.
"""
import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

FRAME_SHIFT = 0.08  # seconds per encoder frame (10 ms × subsampling 8)


@dataclass
class Token:
    id: int
    first: int  # first encoder frame that emitted it
    last: int  # last encoder frame of its run


def format_time(seconds: float) -> str:
    """Seconds → ``HH:MM:SS:mmm`` (the upstream long-form format)."""
    ms = int(round(seconds * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}:{ms % 1000:03d}"


def greedy_tokens(frame_ids: Sequence[int], blank: int = 0, offset: int = 0) -> List[Token]:
    """Per-frame argmax ids → tokens: collapse runs of one id, then drop blanks."""
    tokens, prev = [], None
    for t, i in enumerate(frame_ids):
        if i == prev and i != blank:
            tokens[-1].last = t + offset
        elif i != blank:
            tokens.append(Token(int(i), t + offset, t + offset))
        prev = i
    return tokens


@dataclass
class Transcript:
    """One utterance's decoding. ``frame_ids`` (greedy per-frame ids) drive silence segments;
    ``nbest`` (beam modes) holds the ranked alternatives as (score, Hypothesis), the first
    one being ``tokens``' labelling; ``verbatim`` texts keep special pieces (``<unk>``), as
    the reference writes transducer output."""

    tokens: List[Token]
    vocab: Optional[object] = None
    key: Optional[str] = None
    frame_ids: List[int] = field(default_factory=list, repr=False)
    blank: int = 0
    nbest: List[tuple] = field(default_factory=list, repr=False)
    verbatim: bool = False

    @property
    def ids(self) -> List[int]:
        return [t.id for t in self.tokens]

    @property
    def text(self) -> str:
        return text_of(self.tokens, self.vocab, self.verbatim)

    def words(self, tokens: Optional[List[Token]] = None) -> List[dict]:
        """[{"word", "start", "end"}] in seconds, words split at ``▁`` pieces."""
        tokens = self.tokens if tokens is None else tokens
        if self.vocab is None:
            return [{"word": str(t.id), "start": round(t.first * FRAME_SHIFT, 3),
                     "end": round((t.last + 1) * FRAME_SHIFT, 3)} for t in tokens]
        ids = [t.id for t in tokens]
        return [{"word": w, "start": round(tokens[a].first * FRAME_SHIFT, 3),
                 "end": round((tokens[b].last + 1) * FRAME_SHIFT, 3)}
                for w, a, b in self.vocab.ids_to_words(ids, [t.first for t in tokens])]

    def token_times(self) -> List[dict]:
        """[{"token", "start", "end"}] in seconds: each CTC token's emitting frames."""
        name = (lambda i: self.vocab.tokens[i]) if self.vocab is not None else str
        return [{"token": name(t.id), "start": round(t.first * FRAME_SHIFT, 3),
                 "end": round((t.last + 1) * FRAME_SHIFT, 3)} for t in self.tokens]

    def as_dict(self) -> dict:
        out = {"text": self.text, "words": self.words(), "tokens": self.token_times()}
        if self.key is not None:
            out = {"key": self.key, **out}
        return out

    def segments(self, max_silence_duration: float = 0.5) -> List[dict]:
        """Split at silences like upstream long-form decoding (spec §11), with correct text.

        A segment opens at a non-blank frame and closes once ``max_silence_duration // 0.08``
        blank frames follow it; its start is pulled up to 2 frames earlier (and, after the first
        segment, to the midpoint of the gap). Unlike upstream, the text is the proper CTC
        collapse of the segment's frames, so ``a ∅ a`` keeps both tokens.
        """
        max_silence = max_silence_duration // FRAME_SHIFT
        spans, silence, opened, prev_end = [], 0, None, None
        for t, i in enumerate(self.frame_ids):
            if i == self.blank:
                silence += 1
            else:
                if opened is None:
                    start = max(t - 2, 0) if prev_end is None else max(
                        math.ceil((t + prev_end) / 2), t - 2)
                    opened = (t, start)
                silence = 0
            if opened is not None and silence >= max_silence:
                spans.append((opened[0], opened[1], t))
                prev_end, opened = t, None
        if opened is not None:
            spans.append((opened[0], opened[1], len(self.frame_ids) - 1))
        out = []
        for first, start, end in spans:
            tokens = [tok for tok in self.tokens if first <= tok.first <= end]
            out.append({"decode": text_of(tokens, self.vocab, self.verbatim),
                        "start": format_time(start * FRAME_SHIFT),
                        "end": format_time(end * FRAME_SHIFT),
                        "words": self.words(tokens)})
        return out


def text_of(tokens: List[Token], vocab, verbatim: bool = False) -> str:
    ids = [t.id for t in tokens]
    return vocab.ids_to_text(ids, verbatim) if vocab is not None else " ".join(map(str, ids))
