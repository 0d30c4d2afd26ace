"""Word and character error rates (Levenshtein distance via ``editdistance``) and a
per-utterance error report.

Both texts are NFC-normalised first, so a Vietnamese letter counts once whether its diacritics
are precomposed ("à") or combining ("a" + U+0300). Words are whitespace-separated; characters
are counted with all whitespace removed, so CER ignores word segmentation.
"""
import unicodedata
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

import editdistance

from chunkformer.data.text import normalize_text

UNITS = ("word", "char")


def _units(text: str, unit: str) -> List[str]:
    text = unicodedata.normalize("NFC", text)
    if unit == "word":
        return text.split()
    if unit == "char":
        return [c for c in text if not c.isspace()]
    raise ValueError(f"unknown unit {unit!r}; expected one of {UNITS}")


def error_counts(ref: str, hyp: str, unit: str = "word") -> Tuple[int, int]:
    """→ (substitutions + deletions + insertions, number of reference units)."""
    r = _units(ref, unit)
    return editdistance.eval(r, _units(hyp, unit)), len(r)


def error_rate(errors: int, ref_len: int) -> float:
    """errors / ref_len; an empty reference gives 0.0 without errors, else inf."""
    if ref_len == 0:
        return 0.0 if errors == 0 else float("inf")
    return errors / ref_len


@dataclass
class ErrorTally:
    """Errors and reference units summed over utterances (one tally per unit)."""

    errors: int = 0
    ref_len: int = 0
    utterances: int = 0

    def add(self, errors: int, ref_len: int):
        """Count one utterance's ``error_counts``."""
        self.errors += errors
        self.ref_len += ref_len
        self.utterances += 1

    @property
    def rate(self) -> float:
        return error_rate(self.errors, self.ref_len)

    def summary(self) -> str:
        """e.g. ``12.50 % [5 / 40]`` (errors / reference units)."""
        return f"{100 * self.rate:.2f} % [{self.errors} / {self.ref_len}]"


Counts = Tuple[int, int]


def write_error_report(path, rows: Iterable[Tuple[str, str, str, Counts, Counts]]):
    """Write one TSV line per utterance: key, wer, cer, word_errors, ref_words, ref, hyp.

    Args:
        rows: (key, ref, hyp, word (errors, ref_len), char (errors, ref_len)), as given by
            ``error_counts``; written most word errors first, then most char errors, then key.
    """
    rows = sorted(rows, key=lambda r: (-r[3][0], -r[4][0], r[0]))
    with open(path, "w", encoding="utf-8") as f:
        f.write("key\twer\tcer\tword_errors\tref_words\tref\thyp\n")
        for key, ref, hyp, (w_err, w_len), (c_err, c_len) in rows:
            f.write(f"{key}\t{error_rate(w_err, w_len):.4f}\t{error_rate(c_err, c_len):.4f}"
                    f"\t{w_err}\t{w_len}\t{ref}\t{hyp}\n")


def score(hyps: Dict[str, str], refs: Dict[str, str], report=None) -> Optional[str]:
    """WER and CER of the hypotheses that have a reference, both texts through the one
    normaliser used for training targets. Writes the per-utterance report to ``report`` (a
    path) when given. Returns ``WER 12.50 % [5 / 40]  CER ... (n utterances)``, or None when
    no hypothesis has a reference."""
    words, chars, rows = ErrorTally(), ErrorTally(), []
    for key, hyp in hyps.items():
        if key not in refs:
            continue
        ref, hyp = normalize_text(refs[key]), normalize_text(hyp)
        w, c = error_counts(ref, hyp, "word"), error_counts(ref, hyp, "char")
        words.add(*w)
        chars.add(*c)
        rows.append((key, ref, hyp, w, c))
    if not rows:
        return None
    if report is not None:
        write_error_report(report, rows)
    return f"WER {words.summary()}  CER {chars.summary()}  ({len(rows)} utterances)"
