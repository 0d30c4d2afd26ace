"""The released ``vocab.txt``: one ``TOKEN ID`` line per token, ids 0..V-1.

By convention ``<blank>`` is 0, ``<unk>`` is 1 and the last id is ``<sos/eos>`` (WeNet). Pieces
are sentencepiece pieces where ``▁`` (U+2581) marks the start of a word. Any token written
``<...>`` is special and never appears in text.
"""
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

WORD_START = "\u2581"


def is_special(token: str) -> bool:
    """``<blank>``, ``<unk>``, ``<sos/eos>`` and any other ``<...>`` token."""
    return len(token) > 2 and token.startswith("<") and token.endswith(">")


def _parse(path) -> Dict[int, Tuple[str, int]]:
    """id → (token, line number); one-line errors name the file and line."""
    by_id, line_of_token = {}, {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            fields = line.split()
            if len(fields) != 2:
                raise ValueError(f"{path}:{n}: expected 'TOKEN ID', got {line.rstrip()!r}")
            token, id_text = fields
            try:
                token_id = int(id_text)
            except ValueError:
                raise ValueError(f"{path}:{n}: id {id_text!r} is not an integer") from None
            if token_id < 0:
                raise ValueError(f"{path}:{n}: negative id {token_id}")
            if token_id in by_id:
                raise ValueError(f"{path}:{n}: duplicate id {token_id} "
                                 f"(first on line {by_id[token_id][1]})")
            if token in line_of_token:
                raise ValueError(f"{path}:{n}: duplicate token {token!r} "
                                 f"(first on line {line_of_token[token]})")
            by_id[token_id], line_of_token[token] = (token, n), n
    return by_id


@dataclass
class Vocabulary:
    """``tokens[i]`` is the piece with id i."""

    tokens: List[str]

    def __post_init__(self):
        self.token_to_id = {token: i for i, token in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def load(cls, path) -> "Vocabulary":
        by_id = _parse(path)
        if not by_id:
            raise ValueError(f"{path}: no tokens")
        missing = next(i for i in range(len(by_id) + 1) if i not in by_id)
        if missing < len(by_id):
            above = min(i for i in by_id if i > missing)
            raise ValueError(f"{path}:{by_id[above][1]}: id {above} leaves a gap, id {missing} "
                             f"is missing (ids must be 0..V-1)")
        return cls([by_id[i][0] for i in range(len(by_id))])

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(f"{token} {i}\n" for i, token in enumerate(self.tokens))

    @property
    def sos_eos_id(self) -> int:
        """Id of ``<sos/eos>``, else the last id (WeNet: sos = eos = V - 1)."""
        return self.token_to_id.get("<sos/eos>", len(self.tokens) - 1)

    def ids_to_text(self, ids: Sequence[int], verbatim: bool = False) -> str:
        """Pieces joined, ``▁`` → space, ends stripped; special tokens dropped, or written
        as they are with ``verbatim`` (the reference's transducer text rule)."""
        pieces = (self.tokens[i] for i in ids)
        text = "".join(p for p in pieces if verbatim or not is_special(p))
        return text.replace(WORD_START, " ").strip()

    def ids_to_words(self, ids: Sequence[int],
                     times: Sequence[int]) -> List[Tuple[str, int, int]]:
        """Group pieces into words, for word timestamps.

        A word starts at a piece beginning with ``▁`` (or at the first piece); special tokens
        are skipped without breaking a word, and empty words (a lone ``▁``) are dropped.

        Args:
            ids: token ids; times: the frame of each token, same length (the returned indices
                point into both).
        Returns:
            (word, index of its first token, index of its last token) for each word.
        """
        if len(ids) != len(times):
            raise ValueError(f"{len(ids)} ids but {len(times)} times")
        words: List[List] = []  # [text, first index, last index]
        for index, token_id in enumerate(ids):
            piece = self.tokens[token_id]
            if is_special(piece):
                continue
            if piece.startswith(WORD_START) or not words:
                words.append(["", index, index])
            words[-1][0] += piece.replace(WORD_START, "")
            words[-1][2] = index
        return [(text, first, last) for text, first, last in words if text]
