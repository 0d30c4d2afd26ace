"""Word n-gram language models in the ARPA format: read, query, write.

An :class:`NgramLM` is what an ARPA file holds: for each listed n-gram its log10 probability
and, for n-grams that are contexts of longer ones, a log10 backoff weight. A query backs off
in the usual way (Katz / interpolated Kneser-Ney as stored by SRILM and KenLM):

    log10 p(w | h) = logprob(h w)                        if h w is listed
                   = backoff(h) + log10 p(w | h[1:])     otherwise (backoff(h) = 0 if unlisted)

with the unigram of an unknown word taken from ``<unk>`` (or ``unk_log10`` when the file has
none). Files built by :mod:`chunkformer.lm.kneser_ney`, KenLM's ``lmplz`` or SRILM load alike;
gzip files (``.gz``) are read directly. Everything is held in Python dicts, about 430 bytes
and 2 µs of loading per n-gram (100,845 n-grams: 42 MiB, 0.18 s), which suits the in-domain
models a call center builds (a few million n-grams); a web-scale model wants KenLM's own
binary format and query library. Queries agree with KenLM's to 1e-5 (log10, the ARPA files'
printed precision).
"""
import gzip
import math
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
LN10 = math.log(10.0)

Ngram = Tuple[str, ...]


class ArpaError(ValueError):
    """A malformed ARPA file; the message names the file and line."""


class NgramLM:
    """A backoff n-gram model.

    Args:
        entries: n-gram → (log10 probability, log10 backoff), every order together.
        unk_log10: log10 probability of a word outside the vocabulary when there is no
            ``<unk>`` unigram (KenLM's ``lmplz`` always writes one).
    """

    def __init__(self, entries: Dict[Ngram, Tuple[float, float]], unk_log10: float = -10.0):
        if not entries:
            raise ValueError("an n-gram model needs at least one n-gram")
        self.entries = entries
        self.order = max(map(len, entries))
        unk = entries.get((UNK,))
        self.unk_log10 = unk[0] if unk is not None else unk_log10
        self.log10_prob = lru_cache(maxsize=1 << 18)(self._log10_prob)

    def counts(self) -> Dict[int, int]:
        """Number of n-grams of each order."""
        out = {n: 0 for n in range(1, self.order + 1)}
        for ngram in self.entries:
            out[len(ngram)] += 1
        return out

    def _log10_prob(self, history: Ngram, word: str) -> float:
        """log10 p(word | history); ``history`` may be longer than order - 1 (its tail is
        used) and may start with ``<s>``."""
        context = history[len(history) - self.order + 1:] if self.order > 1 else ()
        backoff = 0.0
        while True:
            entry = self.entries.get(context + (word,))
            if entry is not None:
                return backoff + entry[0]
            if not context:
                return backoff + self.unk_log10
            below = self.entries.get(context)
            if below is not None:
                backoff += below[1]
            context = context[1:]

    def sentence_log10(self, words: Iterable[str], bos: bool = True, eos: bool = True) -> float:
        """log10 probability of a word sequence (with ``<s>`` / ``</s>`` by default)."""
        history: Ngram = (BOS,) if bos else ()
        total = 0.0
        for word in list(words) + ([EOS] if eos else []):
            total += self.log10_prob(history, word)
            history = (history + (word,))[-(self.order - 1):] if self.order > 1 else ()
        return total

    def contains(self, word: str) -> bool:
        return (word,) in self.entries

    @classmethod
    def load(cls, path, unk_log10: float = -10.0) -> "NgramLM":
        return cls(read_arpa(path), unk_log10)

    def save(self, path) -> None:
        write_arpa(self.entries, path)


def _open_text(path, mode: str):
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, mode + "t", encoding="utf-8")
    return open(path, mode, encoding="utf-8")


def read_arpa(path) -> Dict[Ngram, Tuple[float, float]]:
    """ARPA file → n-gram entries; :class:`ArpaError` with file:line on anything malformed,
    including section sizes that disagree with the ``\\data\\`` header."""
    entries: Dict[Ngram, Tuple[float, float]] = {}
    declared: Dict[int, int] = {}
    found: Dict[int, int] = {}
    section: Optional[int] = None  # None: before \data\, 0: in \data\, n: in \n-grams:
    ended = False
    with _open_text(path, "r") as f:
        for number, raw in enumerate(f, start=1):
            line = raw.strip()
            where = f"{path}:{number}"
            if not line or ended:
                continue
            if line == "\\data\\":
                section = 0
            elif line == "\\end\\":
                ended = True
            elif line.startswith("\\") and line.endswith("-grams:"):
                try:
                    section = int(line[1:-len("-grams:")])
                except ValueError:
                    raise ArpaError(f"{where}: bad section header {line!r}") from None
                if section not in declared:
                    raise ArpaError(f"{where}: {section}-grams not declared in \\data\\")
                found[section] = 0
            elif section == 0:
                key, _, value = line.partition("=")
                if not key.startswith("ngram ") or not value.strip().isdigit():
                    raise ArpaError(f"{where}: expected 'ngram N=count', got {line!r}")
                declared[int(key.split()[1])] = int(value)
            elif section is None:
                continue  # text before \data\ (comments) is allowed
            else:
                fields = line.split()
                if len(fields) not in (section + 1, section + 2):
                    raise ArpaError(f"{where}: a {section}-gram line needs log10 prob, "
                                    f"{section} words and an optional backoff: {line!r}")
                try:
                    prob = float(fields[0])
                    backoff = float(fields[section + 1]) if len(fields) == section + 2 else 0.0
                except ValueError:
                    raise ArpaError(f"{where}: not a number in {line!r}") from None
                entries[tuple(fields[1:section + 1])] = (prob, backoff)
                found[section] += 1
    if not declared:
        raise ArpaError(f"{path}: no \\data\\ section (not an ARPA file)")
    if not ended:
        raise ArpaError(f"{path}: no \\end\\ (file truncated?)")
    for n, count in declared.items():
        if found.get(n, 0) != count:
            raise ArpaError(f"{path}: \\data\\ declares {count} {n}-grams, the file has "
                            f"{found.get(n, 0)}")
    return entries


def write_arpa(entries: Dict[Ngram, Tuple[float, float]], path) -> None:
    """Write entries as ARPA (n-grams sorted within each order; backoff written when not 0).
    Written to a temporary name and renamed, so a reader never sees half a file."""
    order = max(map(len, entries))
    by_order = {n: sorted(g for g in entries if len(g) == n) for n in range(1, order + 1)}
    path = Path(path)
    tmp = path.with_name(".tmp." + path.name)  # keeps a .gz suffix
    with _open_text(tmp, "w") as f:
        f.write("\n\\data\\\n")
        for n in range(1, order + 1):
            f.write(f"ngram {n}={len(by_order[n])}\n")
        for n in range(1, order + 1):
            f.write(f"\n\\{n}-grams:\n")
            for ngram in by_order[n]:
                prob, backoff = entries[ngram]
                line = f"{prob:.7g}\t{' '.join(ngram)}"
                if backoff != 0.0:
                    line += f"\t{backoff:.7g}"
                f.write(line + "\n")
        f.write("\n\\end\\\n")
    tmp.replace(path)
