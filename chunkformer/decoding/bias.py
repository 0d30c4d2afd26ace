"""What a CTC prefix beam search adds to the acoustic score: hotword bonuses and a word LM.

A :class:`DecodingBias` is a state machine over the tokens a hypothesis emits. The search
keeps one state per prefix, calls ``extend(state, token) -> (delta, state)`` when a prefix
grows by a token and ``finish(state) -> delta`` when it reports the prefix as a hypothesis;
prefixes are ranked by CTC log-probability + the sum of the deltas.

* Hotwords (:class:`~chunkformer.decoding.context_graph.ContextGraph`): a token that
  continues a phrase earns the phrase's boost, an abandoned match is taken back, a completed
  phrase is banked. The graph runs over the *characters* of the spelt phrase (``▁thẻ▁tín``)
  and a token steps it through its piece's characters, so a phrase matches however the model
  splits it into pieces: a BPE model does not always emit the segmentation its tokenizer
  would write (on the default recipe's test texts, a released-style folder's greedy
  tokenization differs from the BPE model's in 16% of sentences). Each letter earns the
  phrase's boost × its token count / its letter count, so a completed phrase earns
  boost × tokens, as with token-level graphs; the word-start marks earn nothing, else every
  hypothesis that starts a word would hold a bonus for a moment and the search would favour
  splitting words (measured: +0.25 CER points on the default test set with the list on).
* Word LM (shallow fusion at word boundaries): a token that starts a word (its piece begins
  with ``▁``) completes the word before it, which then scores
  ``lm_weight × ln p(word | previous words) + word_bonus``; ``finish`` scores the last word
  and ``</s>``. Words are the model's own spelling (the normalised text the tokenizer
  writes), so the LM must be built from text normalised the same way
  (:mod:`chunkformer.bin.build_lm` does that).
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

from chunkformer.data.numbers import spoken_text
from chunkformer.data.tokenizer import VocabTokenizer, spell
from chunkformer.data.vocab import WORD_START, Vocabulary, is_special
from chunkformer.decoding.context_graph import (DEFAULT_BOOST, ContextGraph, ContextState,
                                                read_hotwords)
from chunkformer.lm.arpa import BOS, EOS, LN10, NgramLM

NO_CHARACTER = -1  # what a special token (``<unk>``) spells: matches no phrase


def hotword_graph(hotwords: Sequence[Tuple[str, float]], tokenizer) -> ContextGraph:
    """(phrase as the user writes it, boost per token) pairs → a character-level graph.

    Each phrase is normalised as training targets are (numbers written out), spelt with
    ``▁`` word starts and counted in ``tokenizer``'s tokens. ValueError names a phrase the
    model cannot spell or that normalises to nothing."""
    phrases, boosts = [], []
    for phrase, boost in hotwords:
        text = spoken_text(phrase)
        ids, unknown = tokenizer.encode(text)
        if not ids:
            raise ValueError(f"hotword {phrase!r} is empty once normalised")
        if unknown:
            raise ValueError(f"hotword {phrase!r}: the model cannot spell "
                             f"{' '.join(sorted(set(unknown)))}")
        spelt = spell(text)
        letters = sum(c != WORD_START for c in spelt)
        phrases.append([ord(c) for c in spelt])
        boosts.append([0.0 if c == WORD_START else boost * len(ids) / letters for c in spelt])
    return ContextGraph(phrases, boosts)


@dataclass(frozen=True)
class BiasState:
    context: Optional[ContextState]
    history: Tuple[str, ...]  # the last order - 1 completed words (``<s>`` first)
    word: str  # the word being spelt


class DecodingBias:
    """Hotwords and/or a word LM over a model's vocabulary.

    Args:
        tokens: the vocabulary's pieces, by id.
        context: hotword automaton over characters (:func:`hotword_graph`), or None.
        lm: word n-gram model, or None.
        lm_weight: weight of the LM's natural-log probability.
        word_bonus: added per completed word (counters the LM's preference for few words).
    """

    def __init__(self, tokens: Sequence[str], context: Optional[ContextGraph] = None,
                 lm: Optional[NgramLM] = None, lm_weight: float = 0.5,
                 word_bonus: float = 0.0):
        if context is None and lm is None:
            raise ValueError("a decoding bias needs hotwords, a language model or both")
        self.context, self.lm = context, lm
        self.lm_weight, self.word_bonus = lm_weight, word_bonus
        self.chars = [[NO_CHARACTER] if is_special(t) else [ord(c) for c in t] for t in tokens]
        self.starts = [t.startswith(WORD_START) for t in tokens]
        self.pieces = [t[1:] if s else t for t, s in zip(tokens, self.starts)]
        self.keep = max(lm.order - 1, 0) if lm is not None else 0

    def describe(self) -> str:
        """One line for logs: what is fused, with its weights."""
        parts = []
        if self.context is not None:
            parts.append(f"{self.context.num_phrases} hotword phrases")
        if self.lm is not None:
            counts = "/".join(str(n) for n in self.lm.counts().values())
            parts.append(f"{self.lm.order}-gram LM ({counts} n-grams), weight "
                         f"{self.lm_weight}, word bonus {self.word_bonus}")
        return "; ".join(parts)

    def initial(self) -> BiasState:
        return BiasState(ContextState() if self.context is not None else None,
                         (BOS,) if self.lm is not None else (), "")

    def _word(self, history: Tuple[str, ...], word: str) -> Tuple[float, Tuple[str, ...]]:
        """LM term of ``word`` after ``history``, and the history after it."""
        delta = self.lm_weight * LN10 * self.lm.log10_prob(history, word)
        if word != EOS:
            delta += self.word_bonus
        return delta, ((history + (word,))[-self.keep:] if self.keep else ())

    def extend(self, state: BiasState, token: int) -> Tuple[float, BiasState]:
        delta, context = 0.0, state.context
        if context is not None:
            for char in self.chars[token]:
                d, context = self.context.step(context, char)
                delta += d
        history, word = state.history, state.word
        if self.lm is not None:
            if self.starts[token]:
                if word:
                    lm_delta, history = self._word(history, word)
                    delta += lm_delta
                word = self.pieces[token]
            else:
                word += self.pieces[token]
        return delta, BiasState(context, history, word)

    def finish(self, state: BiasState) -> float:
        delta = 0.0
        if state.context is not None:
            delta += self.context.finish(state.context)
        if self.lm is not None:
            history = state.history
            if state.word:
                word_delta, history = self._word(history, state.word)
                delta += word_delta
            delta += self._word(history, EOS)[0]
        return delta

    def parts(self, ids: Sequence[int]) -> dict:
        """What each source adds to a labelling: ``hotwords`` (bonus), ``lm`` (ln p of the
        words and ``</s>``, unweighted) and ``words`` (count) — for n-best output."""
        bonus = 0.0
        context = ContextState() if self.context is not None else None
        words = []
        for token in ids:
            for char in self.chars[token] if context is not None else ():
                d, context = self.context.step(context, char)
                bonus += d
            if self.starts[token] or not words:
                words.append("")
            words[-1] += self.pieces[token]
        if context is not None:
            bonus += self.context.finish(context)
        words = [w for w in words if w]
        out = {"hotwords": bonus} if self.context is not None else {}
        if self.lm is not None:
            out["lm"] = LN10 * self.lm.sentence_log10(words)
            out["words"] = len(words)
        return out


def make_bias(vocab: Vocabulary, hotwords=None, lm=None, lm_weight: float = 0.5,
              word_bonus: float = 0.0) -> Optional[DecodingBias]:
    """A model's :class:`DecodingBias` from what users pass (None when neither is given).

    ``hotwords``: a file (:func:`~chunkformer.decoding.context_graph.read_hotwords`) or a list
    of phrases / (phrase, boost) pairs; ``lm``: an ARPA path or an ``NgramLM``."""
    if hotwords is None and lm is None:
        return None
    context = None
    if hotwords is not None:
        if isinstance(hotwords, (str, Path)):
            hotwords = read_hotwords(hotwords)
        pairs = [(h, DEFAULT_BOOST) if isinstance(h, str) else tuple(h) for h in hotwords]
        context = hotword_graph(pairs, VocabTokenizer(vocab))
    if lm is not None and not isinstance(lm, NgramLM):
        lm = NgramLM.load(lm)
    return DecodingBias(vocab.tokens, context, lm, lm_weight, word_bonus)
