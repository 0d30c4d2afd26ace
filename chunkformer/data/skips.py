"""Rows left out of a job, and why: counted by reason for the summary line, listed in a TSV.

Reasons are one-line messages such as :class:`chunkformer.data.audio.AudioError` gives
(``<audio>: file not found``); the audio path prefix is dropped, and the text before the next
``:`` is the reason's category (``not an audio file / unreadable``) that the counts group by.
Keys and audio paths can be written hashed or left out (``key_mode``), since call ids may carry
phone numbers.
"""
from collections import Counter
from pathlib import Path
from typing import Iterable, List, Tuple

from chunkformer.data.manifest import Utterance, display_key


class SkipLog:
    """Collects (key, audio, reason) for every row a job leaves out."""

    def __init__(self, rows: Iterable[Tuple[Utterance, str]] = ()):
        self.entries: List[Tuple[str, str, str]] = []
        for row, reason in rows:
            self.add(row, reason)

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, row: Utterance, reason: str) -> None:
        audio = str(row.audio)
        self.entries.append((row.key, audio, reason.removeprefix(f"{audio}: ")))

    def counts(self) -> Counter:
        """Category → number of rows."""
        return Counter(reason.split(":")[0] for _, _, reason in self.entries)

    def summary(self) -> str:
        """``3 skipped (file not found: 2, empty transcript: 1)``, or ``0 skipped``."""
        counts = ", ".join(f"{reason}: {n}" for reason, n in self.counts().most_common())
        return f"{len(self)} skipped" + (f" ({counts})" if counts else "")

    def write(self, path, key_mode: str = "plain") -> None:
        """``<key>\\t<audio>\\t<reason>`` per row; key and audio shown as ``key_mode`` says."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            for key, audio, reason in self.entries:
                f.write(f"{display_key(key, key_mode)}\t{display_key(audio, key_mode)}\t"
                        f"{reason}\n")
