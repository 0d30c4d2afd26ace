"""Whole-call scoring: how well a call's one transcript matches its turns.

References come from a turns list (one row per turn: ``group`` = the call's key, ``start`` /
``end`` in the call's recording, transcript, and ``channel`` when the call is two-channel);
hypotheses from ``recognize``'s ``result.jsonl`` (one row per call, with word times and, with
``--channels split``, each word's ``channel``). Three numbers per set of calls:

- **CER / WER** of each call's text against its turns' transcripts in time order;
- **gap insertions**: recognised words lying wholly in a gap where nobody speaks (farther than
  ``margin`` seconds from every turn): the words a model invents in line noise;
- **channel attribution** (hypotheses and references with channels): of each speaker's words
  recognised anywhere in the call (hits of an alignment of the speaker's turns to all the
  call's recognised words), the share recognised on the speaker's own channel (hits of the
  alignment to that channel's words).
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from chunkformer.data.text import normalize_text
from chunkformer.data.utterance import ManifestError
from chunkformer.decoding.metrics import ErrorTally, error_counts


@dataclass
class Turn:
    start: float
    end: float
    text: str
    channel: Optional[int]


def turns_by_call(rows: Sequence) -> Dict[str, List[Turn]]:
    """Turns-list rows (Utterance: group, start, end, text, channel) → {call: turns in time
    order}."""
    calls: Dict[str, List[Turn]] = {}
    for row in rows:
        if row.start is None or row.end is None:
            raise ManifestError(f"turn {row.key}: needs start and end within its call")
        calls.setdefault(row.group, []).append(
            Turn(row.start, row.end, normalize_text(row.text or ""), row.channel))
    return {k: sorted(v, key=lambda t: (t.start, t.channel or 0)) for k, v in calls.items()}


def word_hits(ref: List[str], hyp: List[str]) -> int:
    """Correct words of a minimum-edit alignment of ``hyp`` to ``ref`` (most hits among the
    alignments of least cost)."""
    # cost, -hits per cell; rows over ref, columns over hyp
    prev = [(j, 0) for j in range(len(hyp) + 1)]
    for i in range(1, len(ref) + 1):
        cur = [(i, 0)]
        for j in range(1, len(hyp) + 1):
            same = ref[i - 1] == hyp[j - 1]
            diag = (prev[j - 1][0] + (0 if same else 1), prev[j - 1][1] - (1 if same else 0))
            cur.append(min(diag, (prev[j][0] + 1, prev[j][1]), (cur[j - 1][0] + 1, cur[j - 1][1])))
        prev = cur
    return -prev[-1][1]


def in_gap(word: dict, turns: List[Turn], margin: float) -> bool:
    """Whether the word lies wholly outside every turn widened by ``margin`` seconds."""
    return all(word["end"] <= t.start - margin or word["start"] >= t.end + margin
               for t in turns)


@dataclass
class CallScores:
    """Totals over the scored calls (module docstring)."""

    calls: int = 0
    words: ErrorTally = field(default_factory=ErrorTally)
    chars: ErrorTally = field(default_factory=ErrorTally)
    gap_insertions: int = 0
    gap_seconds: float = 0.0
    hits: int = 0
    attributed: int = 0
    with_channels: bool = False

    @property
    def attribution(self) -> Optional[float]:
        return self.attributed / self.hits if self.with_channels and self.hits else None

    def summary(self) -> str:
        line = (f"WER {self.words.summary()}  CER {self.chars.summary()}  ({self.calls} calls); "
                f"{self.gap_insertions} words inserted in {self.gap_seconds:.0f} s of gaps")
        if self.attribution is not None:
            line += (f"; {100 * self.attribution:.1f}% of recognised words on their speaker's "
                     f"channel [{self.attributed} / {self.hits}]")
        return line

    def as_dict(self) -> dict:
        return {"calls": self.calls, "wer": 100 * self.words.rate, "cer": 100 * self.chars.rate,
                "gap_insertions": self.gap_insertions, "gap_seconds": self.gap_seconds,
                "attribution": None if self.attribution is None else 100 * self.attribution}


def gap_seconds(turns: List[Turn], margin: float, duration: float) -> float:
    """Seconds of the call (up to its last turn's end, or ``duration``) farther than
    ``margin`` from every turn."""
    covered, end = 0.0, 0.0
    for t in sorted(turns, key=lambda t: t.start):
        s, e = max(t.start - margin, end), t.end + margin
        covered += max(0.0, e - s)
        end = max(end, e)
    return max(0.0, max(duration, end) - covered)


def score_calls(results: Dict[str, dict], turns: Dict[str, List[Turn]],
                margin: float = 0.2) -> CallScores:
    """Score ``recognize`` result rows ({call: row with "text" and "words"}) against the
    calls' turns; calls without a result are left out (ManifestError when none is left)."""
    scores = CallScores()
    for key, call_turns in turns.items():
        row = results.get(key)
        if row is None:
            continue
        scores.calls += 1
        ref = " ".join(t.text for t in call_turns)
        hyp = normalize_text(row["text"])
        scores.words.add(*error_counts(ref, hyp, "word"))
        scores.chars.add(*error_counts(ref, hyp, "char"))
        words = row.get("words", [])
        scores.gap_insertions += sum(in_gap(w, call_turns, margin) for w in words)
        last = max((w["end"] for w in words), default=0.0)
        scores.gap_seconds += gap_seconds(call_turns, margin, last)
        if all(t.channel is not None for t in call_turns) and words and \
                all("channel" in w for w in words):
            scores.with_channels = True
            every = [normalize_text(w["word"]) for w in words]
            for channel in sorted({t.channel for t in call_turns}):
                own_ref = " ".join(t.text for t in call_turns if t.channel == channel).split()
                own_hyp = [normalize_text(w["word"]) for w in words
                           if w["channel"] == channel]
                scores.hits += word_hits(own_ref, every)
                scores.attributed += word_hits(own_ref, own_hyp)
    if not scores.calls:
        raise ManifestError("no call of the turns list has a result")
    return scores
