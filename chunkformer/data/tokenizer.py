"""Tokenizers: transcript → token ids of a ``vocab.txt`` and back, three kinds, one API.

Every kind first normalises the text with :func:`chunkformer.data.text.normalize_text` (the one
normaliser, also used for WER) and writes it sentencepiece-style: each word is preceded by the
word-start mark ``▁`` (U+2581), so ``"Xin chào!"`` is spelt ``▁xin▁chào``.

- :class:`CharTokenizer`: the units are single characters and ``▁`` is a unit of its own:
  ``▁ x i n ▁ c h à o``. Built from training texts with :meth:`CharTokenizer.build`.
- :class:`BpeTokenizer`: a sentencepiece BPE model trained on the normalised texts (identity
  normalisation rule, so sentencepiece never re-normalises what ``normalize_text`` produced).
- :class:`VocabTokenizer`: a released model's ``vocab.txt`` reused for fine-tuning: greedy
  longest match over its pieces (released folders ship no sentencepiece model, spec/model.md §1).

``vocab.txt`` follows the released layout (spec/model.md §3): ``<blank>`` 0, ``<unk>`` 1, the
units, ``<sos/eos>`` last. ``encode(text) -> (ids, unknown)``: a character no unit can spell
becomes ``<unk>`` in ``ids`` and is listed in ``unknown`` (once per occurrence), never dropped.
``decode(ids)`` is ``Vocabulary.ids_to_text``, so ``decode(encode(t)[0]) == normalize_text(t)``
whenever ``unknown`` is empty.
"""
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, List, Tuple

import sentencepiece as spm

from chunkformer.data.text import normalize_text
from chunkformer.data.vocab import WORD_START, Vocabulary, is_special

BLANK, UNK, SOS_EOS = "<blank>", "<unk>", "<sos/eos>"
VOCAB_FILE, BPE_FILE = "vocab.txt", "bpe.model"


def spell(text: str) -> str:
    """Normalised text with every word preceded by ``▁``: ``"Xin chào!"`` → ``▁xin▁chào``."""
    return "".join(WORD_START + word for word in normalize_text(text).split(" ") if word)


def released_layout(units: Iterable[str]) -> Vocabulary:
    """``<blank>``, ``<unk>``, the units in the given order, ``<sos/eos>``."""
    return Vocabulary([BLANK, UNK, *units, SOS_EOS])


class Tokenizer:
    """What the kinds share: the vocabulary, decoding and saving ``vocab.txt``; each kind adds
    ``encode(text) -> (ids, unknown characters)``."""

    kind = ""

    def __init__(self, vocab: Vocabulary):
        if UNK not in vocab.token_to_id:
            raise ValueError(f"vocabulary of {len(vocab)} tokens has no {UNK} token")
        self.vocab = vocab
        self.unk_id = vocab.token_to_id[UNK]

    def decode(self, ids) -> str:
        """Token ids → text (special tokens dropped, ``▁`` → space)."""
        return self.vocab.ids_to_text(ids)

    def save(self, folder) -> None:
        """Write ``vocab.txt`` (and the kind's model file) into ``folder``."""
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.vocab.save(Path(folder) / VOCAB_FILE)


class VocabTokenizer(Tokenizer):
    """Greedy longest match over the pieces of an existing vocabulary (WordPiece-style).

    At each position the longest piece that matches the spelt text is taken; a character no
    piece starts with becomes ``<unk>`` and is reported. Word starts are matched by pieces that
    begin with ``▁`` (``▁chào``) or by a lone ``▁`` piece followed by word-internal pieces.
    """

    kind = "vocab"

    def __init__(self, vocab: Vocabulary):
        super().__init__(vocab)
        self.pieces = {t: i for i, t in enumerate(vocab.tokens) if not is_special(t)}
        self.longest = max(map(len, self.pieces), default=1)

    def encode(self, text: str) -> Tuple[List[int], List[str]]:
        """Text → (token ids, characters that no piece covers, in order of occurrence)."""
        spelt, ids, unknown, i = spell(text), [], [], 0
        while i < len(spelt):
            for n in range(min(self.longest, len(spelt) - i), 0, -1):
                token_id = self.pieces.get(spelt[i:i + n])
                if token_id is not None:
                    break
            else:
                token_id, n = self.unk_id, 1
                unknown.append(spelt[i])
            ids.append(token_id)
            i += n
        return ids, unknown


class CharTokenizer(VocabTokenizer):
    """Single-character units plus ``▁`` as the word-start unit (see the module docstring)."""

    kind = "char"

    def __init__(self, vocab: Vocabulary):
        long = [t for t in vocab.tokens if not is_special(t) and len(t) != 1]
        if long:
            raise ValueError(f"a character vocabulary holds single characters, not {long[:3]}")
        super().__init__(vocab)

    @classmethod
    def build(cls, texts: Iterable[str]) -> "CharTokenizer":
        """Units = the characters of the normalised texts and ``▁``, sorted by code point."""
        units = set(WORD_START)
        for text in texts:
            units.update(spell(text))
        return cls(released_layout(sorted(units)))


class BpeTokenizer(Tokenizer):
    """A sentencepiece model; its pieces in sentencepiece id order make the vocabulary.

    ``vocab_size`` counts sentencepiece's pieces including ``<unk>``, so ``vocab.txt`` has
    ``vocab_size + 2`` lines (``<blank>`` and ``<sos/eos>`` added).
    """

    kind = "bpe"

    def __init__(self, model_proto: bytes, vocab: Vocabulary = None):
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        own = [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())
               if i != self.sp.unk_id()]
        vocab = vocab or released_layout(own)
        missing = [p for p in own if p not in vocab.token_to_id]
        if missing:
            raise ValueError(f"{len(missing)} sentencepiece pieces are not in the vocabulary, "
                             f"e.g. {missing[:3]}")
        super().__init__(vocab)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> "BpeTokenizer":
        """Train BPE on the normalised texts (every character kept: coverage 1.0).

        Raises:
            ValueError: sentencepiece refused, e.g. ``vocab_size`` below the character count.
        """
        model = io.BytesIO()  # sentencepiece writes the model here: no temporary file
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=(normalize_text(t) for t in texts), model_writer=model,
                vocab_size=vocab_size, model_type="bpe", character_coverage=1.0,
                normalization_rule_name="identity", unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
                hard_vocab_limit=False, num_threads=1, minloglevel=2)
        except RuntimeError as e:  # "INTERNAL: <source>(<line>) [<check>] <message>"
            raise ValueError(f"sentencepiece: {str(e).split('] ', 1)[-1]}") from None
        return cls(model.getvalue())

    def encode(self, text: str) -> Tuple[List[int], List[str]]:
        """Text → (token ids, characters sentencepiece maps to ``<unk>``)."""
        ids, unknown = [], []
        for piece in self.sp.encode(normalize_text(text), out_type=str):
            token_id = self.vocab.token_to_id.get(piece)
            if token_id is None:  # an unknown span comes back as its surface characters
                token_id = self.unk_id
                unknown.extend(c for c in piece if c != WORD_START)
            ids.append(token_id)
        return ids, unknown

    def save(self, folder) -> None:
        super().save(folder)
        (Path(folder) / BPE_FILE).write_bytes(self.sp.serialized_model_proto())


def load_tokenizer(source) -> Tokenizer:
    """A folder holding ``bpe.model`` and/or ``vocab.txt``, or one of those files → tokenizer.

    ``bpe.model`` → :class:`BpeTokenizer` (with the ``vocab.txt`` beside it when present);
    a ``vocab.txt`` of single characters → :class:`CharTokenizer`; any other ``vocab.txt``
    (a released model's) → :class:`VocabTokenizer`.
    """
    path = Path(source)
    folder = path if path.is_dir() else path.parent
    model = path if path.suffix == ".model" else folder / BPE_FILE
    vocab_path = path if path.is_file() and path.suffix != ".model" else folder / VOCAB_FILE
    vocab = Vocabulary.load(vocab_path) if vocab_path.is_file() else None
    if model.is_file():
        return BpeTokenizer(model.read_bytes(), vocab)
    if vocab is None:
        raise FileNotFoundError(f"{source}: no {VOCAB_FILE} or {BPE_FILE} found")
    if all(is_special(t) or len(t) == 1 for t in vocab.tokens):
        return CharTokenizer(vocab)
    return VocabTokenizer(vocab)


@dataclass
class Coverage:
    """How well a tokenizer spells a set of transcripts.

    Attributes:
        utterances: transcripts measured; failed: those with at least one unknown character.
        characters: characters of the spelt texts (``▁`` included); unknown: counts per
            character that could not be encoded.
    """

    utterances: int = 0
    failed: int = 0
    characters: int = 0
    unknown: Counter = field(default_factory=Counter)

    @property
    def ratio(self) -> float:
        """Share of characters encodable, 1.0 for no text."""
        return 1.0 - sum(self.unknown.values()) / max(self.characters, 1)


def measure_coverage(tokenizer: Tokenizer, texts: Iterable[str]) -> Coverage:
    """Encode every text and count what could not be encoded."""
    coverage = Coverage()
    for text in texts:
        _, unknown = tokenizer.encode(text)
        coverage.utterances += 1
        coverage.failed += bool(unknown)
        coverage.characters += len(spell(text))
        coverage.unknown.update(unknown)
    return coverage
