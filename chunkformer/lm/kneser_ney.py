"""Estimate a word n-gram model with interpolated modified Kneser-Ney smoothing.

Chen & Goodman (1998), "An Empirical Study of Smoothing Techniques for Language Modeling",
with the count adjustments KenLM's ``lmplz`` uses (Heafield et al. 2013):

* every sentence is ``<s> w1 … wn </s>``; the highest order uses raw counts, lower orders the
  continuation count N1+(• g) (how many different words precede g), except n-grams that start
  with ``<s>``, which nothing can precede and which keep their raw count;
* per order, three discounts from the counts-of-counts t1..t4 of those adjusted counts:
  Y = t1 / (t1 + 2 t2), D1 = 1 - 2Y t2/t1, D2 = 2 - 3Y t3/t2, D3+ = 3 - 4Y t4/t3;
  a corpus too small to define them (some t_k = 0, or a D outside [0, k]) falls back to
  ``FALLBACK_DISCOUNTS`` (as ``lmplz --discount_fallback``), and the result says so;
* p(w | h) = (a(h w) - D(a(h w))) / a(h •) + γ(h) p(w | h[1:]),
  γ(h) = (D1 N1(h •) + D2 N2(h •) + D3+ N3+(h •)) / a(h •),
  and below the unigrams the uniform distribution over the vocabulary (``<unk>`` and ``</s>``
  included, ``<s>`` excluded), so ``<unk>`` gets exactly the mass the discounts freed.

Stored as ARPA: log10 of the interpolated p for every seen n-gram and log10 γ(h) as the
backoff of every context, so that :class:`~chunkformer.lm.arpa.NgramLM`'s backoff query gives
the interpolated probability of any word after any history. The result is KenLM's: the same
n-grams, probabilities and backoffs as ``lmplz --discount_fallback`` (tested against its
output, ``test/fixtures/lm``).
"""
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Dict, Iterable, List, Sequence, Tuple

import math

from chunkformer.lm.arpa import BOS, EOS, UNK, Ngram

FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)


@dataclass
class Estimate:
    """The model's entries (n-gram → (log10 p, log10 backoff)) and how it was made."""

    entries: Dict[Ngram, Tuple[float, float]]
    discounts: Dict[int, Tuple[float, float, float]]
    fallback_orders: List[int]


def count_ngrams(sentences: Iterable[Sequence[str]], order: int) -> List[Counter]:
    """Raw counts of every n-gram, n = 1..order, of ``<s> words </s>`` per sentence
    (``counts[n - 1]``). Empty sentences are skipped."""
    if order < 1:
        raise ValueError(f"order must be ≥ 1, got {order}")
    counts = [Counter() for _ in range(order)]
    for words in sentences:
        if not words:
            continue
        tokens = (BOS, *words, EOS)
        for n in range(1, order + 1):
            grams = counts[n - 1]
            for i in range(len(tokens) - n + 1):
                grams[tokens[i:i + n]] += 1
    return counts


def adjusted_counts(counts: List[Counter]) -> List[Counter]:
    """Raw counts → the counts Kneser-Ney estimates from (module docstring)."""
    order = len(counts)
    adjusted = [Counter() for _ in range(order)]
    adjusted[order - 1] = Counter(counts[order - 1])
    for n in range(order - 1, 0, -1):  # order n from the (n + 1)-grams' left extensions
        lower = adjusted[n - 1]
        for gram in counts[n]:
            lower[gram[1:]] += 1
        for gram, c in counts[n - 1].items():
            if gram[0] == BOS:
                lower[gram] = c
    adjusted[0].pop((BOS,), None)  # <s> is never predicted
    return adjusted


def discounts(adjusted: Counter) -> Tuple[float, float, float]:
    """(D1, D2, D3+) from one order's counts-of-counts; ValueError if undefined."""
    t = Counter(c for c in adjusted.values() if c <= 4)
    t1, t2, t3, t4 = (t[k] for k in (1, 2, 3, 4))
    if not (t1 and t2 and t3 and t4):
        raise ValueError("a count-of-counts is zero")
    y = t1 / (t1 + 2 * t2)
    d = (1 - 2 * y * t2 / t1, 2 - 3 * y * t3 / t2, 3 - 4 * y * t4 / t3)
    if not all(0 < dk < k for k, dk in enumerate(d, start=1)):
        raise ValueError(f"discounts {d} out of range")
    return d


def estimate(counts: List[Counter]) -> Estimate:
    """Raw counts (:func:`count_ngrams`) → the interpolated modified Kneser-Ney model."""
    order = len(counts)
    adjusted = adjusted_counts(counts)
    ds, fallback = {}, []
    for n in range(1, order + 1):
        try:
            ds[n] = discounts(adjusted[n - 1])
        except ValueError:
            ds[n], fallback = FALLBACK_DISCOUNTS, fallback + [n]
    vocab = {g[0] for g in adjusted[0]} | {UNK, EOS}
    probs: Dict[Ngram, float] = {}  # interpolated p of every seen n-gram (linear)
    gammas: Dict[Ngram, float] = {}
    for n in range(1, order + 1):
        d = ds[n]
        totals, kinds = defaultdict(float), defaultdict(lambda: [0, 0, 0])
        for gram, c in adjusted[n - 1].items():
            totals[gram[:-1]] += c
            kinds[gram[:-1]][min(c, 3) - 1] += 1
        for context, total in totals.items():
            k1, k2, k3 = kinds[context]
            gammas[context] = (d[0] * k1 + d[1] * k2 + d[2] * k3) / total
        for gram, c in adjusted[n - 1].items():
            context = gram[:-1]
            lower = probs[gram[1:]] if n > 1 else 1.0 / len(vocab)
            probs[gram] = (c - d[min(c, 3) - 1]) / totals[context] + gammas[context] * lower
        if n == 1 and (UNK,) not in probs:
            probs[(UNK,)] = gammas[()] / len(vocab)
    entries = {gram: (math.log10(p), 0.0) for gram, p in probs.items()}
    entries[(BOS,)] = (-99.0, 0.0)  # never predicted; listed as a context, as ARPA files do
    for context, gamma in gammas.items():
        if context and context in entries:
            entries[context] = (entries[context][0], math.log10(gamma))
    return Estimate(entries, ds, fallback)
