"""Tokenizers: decode(encode(t)) == normalize_text(t) for all three kinds on many Vietnamese
sentences and random strings; unknown characters reported (with counts), never dropped."""
import random
import unicodedata
from collections import Counter

import pytest

from chunkformer.data.synthetic import TEMPLATES, fill_template
from chunkformer.data.text import normalize_text
from chunkformer.data.tokenizer import (
    BpeTokenizer, CharTokenizer, VocabTokenizer, load_tokenizer, measure_coverage, spell)
from chunkformer.data.vocab import Vocabulary

LETTERS = ("aăâbcdđeêghiklmnoôơpqrstuưvxyàảãáạằẳẵắặầẩẫấậèẻẽéẹềểễếệìỉĩíịòỏõóọồổỗốộờởỡớợùủũúụừửữứự"
           "ỳỷỹýỵ")
NOISE = "0123456789'" + " \t\n\u00a0" + ".,!?;:-\"()%/…–€$@_"


def _sentences(n=300, seed=0):
    """Banking call-center sentences from the synthetic corpus templates, cased and punctuated
    the way a human transcriber might write them."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        intent = rng.choice(list(TEMPLATES))
        template = rng.choice(rng.choice(list(TEMPLATES[intent].values()))).lstrip("*")
        text = fill_template(template, rng, rng.choice(["north", "south", "colloquial"]))
        out.append(text[0].upper() + text[1:] + rng.choice(["", ".", "?", " !", "..."]))
    return out


def _random_strings(n=500, seed=1):
    """Hypothesis-style strings: letters in either case, NFC or NFD, digits, punctuation and
    odd whitespace."""
    rng = random.Random(seed)
    alphabet = LETTERS + LETTERS.upper() + NOISE
    strings = []
    for _ in range(n):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        strings.append(unicodedata.normalize(rng.choice(["NFC", "NFD"]), s))
    return strings


SENTENCES = _sentences()


@pytest.fixture(scope="module")
def bpe():
    return BpeTokenizer.train(SENTENCES, vocab_size=200)


def _assert_round_trip(tokenizer, texts):
    for text in texts:
        ids, unknown = tokenizer.encode(text)
        assert unknown == [], text
        assert tokenizer.decode(ids) == normalize_text(text), text
        assert all(0 < i < len(tokenizer.vocab) - 1 for i in ids) and tokenizer.unk_id not in ids


def _assert_layout(vocab: Vocabulary):
    assert vocab.tokens[:2] == ["<blank>", "<unk>"] and vocab.tokens[-1] == "<sos/eos>"


def test_spell():
    assert spell("  Xin  CHÀO, quý khách!") == "▁xin▁chào▁quý▁khách"
    assert spell("?!") == ""


def test_char_tokenizer(tmp_path):
    tokenizer = CharTokenizer.build(SENTENCES)
    _assert_layout(tokenizer.vocab)
    units = tokenizer.vocab.tokens[2:-1]
    assert units == sorted(units) and "▁" in units and all(len(u) == 1 for u in units)
    _assert_round_trip(tokenizer, SENTENCES)
    ids, _ = tokenizer.encode("Xin chào")
    assert [tokenizer.vocab.tokens[i] for i in ids] == list("▁xin▁chào")
    tokenizer.save(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert isinstance(loaded, CharTokenizer) and loaded.vocab.tokens == tokenizer.vocab.tokens


def test_char_round_trip_on_random_strings():
    strings = _random_strings()
    tokenizer = CharTokenizer.build([LETTERS, NOISE])
    _assert_round_trip(tokenizer, strings)
    # Without digits and 'đ': exactly those characters are reported, once per occurrence.
    narrow = CharTokenizer.build([LETTERS.replace("đ", "")])
    for s in strings:
        ids, unknown = narrow.encode(s)
        assert unknown == [c for c in spell(s) if c.isdigit() or c == "đ" or c == "'"]
        assert ids.count(narrow.unk_id) == len(unknown)


def test_bpe_tokenizer(bpe, tmp_path):
    _assert_layout(bpe.vocab)
    assert len(bpe.vocab) == bpe.sp.get_piece_size() + 2
    assert any(len(t) > 2 for t in bpe.vocab.tokens[2:-1])  # real merges, not only characters
    _assert_round_trip(bpe, SENTENCES)
    bpe.save(tmp_path)
    assert (tmp_path / "bpe.model").is_file()
    for source in (tmp_path, tmp_path / "bpe.model", tmp_path / "vocab.txt"):
        loaded = load_tokenizer(source)
        assert isinstance(loaded, BpeTokenizer)
        assert [loaded.encode(t) for t in SENTENCES[:20]] == [bpe.encode(t) for t in SENTENCES[:20]]


def test_bpe_reports_unknown_characters(bpe):
    ids, unknown = bpe.encode("Số 9 và số 77, thẻ ₫ Ω")
    assert unknown == ["9", "7", "7", "ω"]
    assert ids.count(bpe.unk_id) == 3  # "77" is one unknown span
    assert normalize_text(bpe.decode(ids)) == "số và số thẻ"  # <unk> never in decoded text


def test_vocab_tokenizer_on_released_vocab(ref_model_dir):
    tokenizer = load_tokenizer(ref_model_dir)
    assert type(tokenizer) is VocabTokenizer
    ids, unknown = tokenizer.encode("Chào anh")
    assert [tokenizer.vocab.tokens[i] for i in ids] == ["▁chà", "o", "▁anh"] and unknown == []
    assert tokenizer.decode(ids) == "chào anh"
    ids, unknown = tokenizer.encode("Số dư: 50 nghìn")
    assert unknown == ["ố", "5", "0", "ì"]
    assert [tokenizer.vocab.tokens[i] for i in ids] == [
        "▁", "s", "<unk>", "▁dư", "▁", "<unk>", "<unk>", "▁", "n", "g", "h", "<unk>", "n"]
    # Texts spelt from random released pieces, in either case, round trip.
    rng, pieces = random.Random(0), tokenizer.vocab.tokens[2:-1]
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 12))).replace("▁", " ")
             for _ in range(300)]
    _assert_round_trip(tokenizer, [t.upper() if i % 3 == 0 else t for i, t in enumerate(texts)])


def test_coverage_counts():
    tokenizer = CharTokenizer.build(["ab"])
    coverage = measure_coverage(tokenizer, ["ab ba", "abc", "cd dc c", ""])
    assert (coverage.utterances, coverage.failed, coverage.characters) == (4, 2, 6 + 4 + 8)
    assert coverage.unknown == Counter({"c": 4, "d": 2})
    assert coverage.ratio == pytest.approx(1 - 6 / 18)


def test_load_errors(tmp_path, bpe):
    with pytest.raises(FileNotFoundError, match="no vocab.txt or bpe.model"):
        load_tokenizer(tmp_path)
    (tmp_path / "vocab.txt").write_text("<blank> 0\na 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no <unk> token"):
        load_tokenizer(tmp_path)
    CharTokenizer.build(["xyz"]).save(tmp_path)
    (tmp_path / "bpe.model").write_bytes(bpe.sp.serialized_model_proto())
    with pytest.raises(ValueError, match="sentencepiece pieces are not in the vocabulary"):
        load_tokenizer(tmp_path)
    with pytest.raises(ValueError, match="^sentencepiece: Vocabulary size is smaller"):
        BpeTokenizer.train(SENTENCES, vocab_size=10)
    with pytest.raises(ValueError, match="single characters"):
        CharTokenizer(Vocabulary(["<blank>", "<unk>", "ab", "<sos/eos>"]))
