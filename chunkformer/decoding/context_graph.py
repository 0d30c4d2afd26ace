"""Hotword boosting: an Aho-Corasick automaton over the model's tokens (context biasing).

Each phrase (a sequence of token ids, with a boost per token) is a path from the root; a node's
``score`` is the bonus a hypothesis has earned by matching the path to it (depth × boost, the
largest over the phrases through it). A search carries a :class:`ContextState` per hypothesis
and calls :meth:`ContextGraph.step` for every token it emits:

* a token that continues the match earns its boost;
* a token that breaks it falls back along the failure links to the longest suffix that is
  still a phrase prefix: the bonus of the abandoned part is taken back, so a partial match
  costs nothing in the end;
* completing a phrase banks its bonus (never taken back), and the match may go on to a longer
  phrase ("thẻ" then "thẻ tín dụng");
* a phrase that ends inside a longer match (a suffix of it, reached through the output links)
  earns its whole bonus once, when it is completed;
* :meth:`ContextGraph.finish` takes back what an unfinished match holds at the end.

So no bonus survives for tokens outside completed phrases: a hypothesis that completes none
ends with a total of 0, whatever partial matches it went through.
"""
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

DEFAULT_BOOST = 2.0


@dataclass(frozen=True)
class ContextState:
    """Where a hypothesis is in the automaton, and how much of ``score(node)`` is banked."""

    node: int = 0
    banked: float = 0.0

    def pending(self, graph: "ContextGraph") -> float:
        """Bonus held by the unfinished match (taken back if it is abandoned)."""
        return graph.score[self.node] - self.banked


class ContextGraph:
    """Build from token-id phrases (module docstring).

    Args:
        phrases: token ids of each phrase (empty ones are ignored).
        boosts: bonus per token of each phrase (log-probability units), default 2.0, or a
            sequence per phrase: one bonus per token.
    """

    def __init__(self, phrases: Sequence[Sequence[int]],
                 boosts: Optional[Sequence[float]] = None):
        boosts = list(boosts) if boosts is not None else [DEFAULT_BOOST] * len(phrases)
        if len(boosts) != len(phrases):
            raise ValueError(f"{len(phrases)} phrases but {len(boosts)} boosts")
        self.next: List[Dict[int, int]] = [{}]
        self.score: List[float] = [0.0]
        self.end: List[Optional[float]] = [None]  # bonus of the phrase ending here
        for tokens, boost in zip(phrases, boosts):
            if not tokens:
                continue
            weights = [boost] * len(tokens) if isinstance(boost, (int, float)) else list(boost)
            if len(weights) != len(tokens):
                raise ValueError(f"a phrase of {len(tokens)} tokens with {len(weights)} boosts")
            node, earned = 0, 0.0
            for token, weight in zip(tokens, weights):
                child = self.next[node].get(token)
                if child is None:
                    child = len(self.next)
                    self.next[node][token] = child
                    self.next.append({})
                    self.score.append(0.0)
                    self.end.append(None)
                earned += weight
                self.score[child] = max(self.score[child], earned)
                node = child
            self.end[node] = max(self.end[node] or 0.0, self.score[node])
        self.fail = [0] * len(self.next)
        self.output: List[Optional[int]] = [None] * len(self.next)  # nearest proper-suffix end
        queue = deque(self.next[0].values())
        while queue:
            node = queue.popleft()
            for token, child in self.next[node].items():
                f = self.fail[node]
                while f and token not in self.next[f]:
                    f = self.fail[f]
                candidate = self.next[f].get(token, 0)
                self.fail[child] = candidate if candidate != child else 0
                target = self.fail[child]
                self.output[child] = target if self.end[target] is not None else \
                    self.output[target]
                queue.append(child)

    @property
    def num_phrases(self) -> int:
        return sum(e is not None for e in self.end)

    def _goto(self, node: int, token: int) -> int:
        while node and token not in self.next[node]:
            node = self.fail[node]
        return self.next[node].get(token, 0)

    def step(self, state: ContextState, token: int) -> Tuple[float, ContextState]:
        """The bonus change for emitting ``token`` in ``state``, and the next state."""
        node = self._goto(state.node, token)
        before = state.pending(self)
        if node and self.next[state.node].get(token) == node:
            banked = state.banked  # the match goes on
        else:
            banked = 0.0  # fell back: a fresh match of the suffix that still is a prefix
        delta = (self.score[node] - banked) - before
        suffix, bonus = self.output[node], 0.0
        while suffix is not None:  # shorter phrases that end here, inside a longer match
            bonus += self.end[suffix]
            suffix = self.output[suffix]
        if self.end[node] is not None:
            banked = self.score[node]  # completed: banked for good
        return delta + bonus, ContextState(node, banked)

    def finish(self, state: ContextState) -> float:
        """The bonus change at the end of the hypothesis: an unfinished match is taken back."""
        return -state.pending(self)


def read_hotwords(path) -> List[Tuple[str, float]]:
    """A hotwords file: one phrase a line, optionally ``<TAB>boost`` (or ``phrase : boost``
    after a last colon); blank lines and ``#`` comments skipped. ValueError names the line."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            phrase, boost = text, DEFAULT_BOOST
            if "\t" in text:
                phrase, _, value = text.rpartition("\t")
            elif " : " in text:
                phrase, _, value = text.rpartition(" : ")
            else:
                value = None
            if value is not None:
                try:
                    boost = float(value)
                except ValueError:
                    raise ValueError(f"{path}:{n}: boost {value.strip()!r} is not a number")\
                        from None
                if not boost > 0:
                    raise ValueError(f"{path}:{n}: boost must be > 0, got {boost}")
            if not phrase.strip():
                raise ValueError(f"{path}:{n}: a boost without a phrase")
            out.append((phrase.strip(), boost))
    if not out:
        raise ValueError(f"{Path(path)}: no hotwords")
    return out
