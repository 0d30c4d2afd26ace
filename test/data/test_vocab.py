"""vocab.txt: byte-exact round trip of the released layout, one-line errors, text and words."""
import re

import pytest

from chunkformer.data.vocab import Vocabulary


def test_fixture_round_trips_byte_exactly(tmp_path, reference_dir):
    fixture = reference_dir / "model" / "vocab.txt"
    vocab = Vocabulary.load(fixture)
    assert len(vocab) == 256
    assert vocab.tokens[:2] == ["<blank>", "<unk>"] and vocab.sos_eos_id == 255
    vocab.save(tmp_path / "vocab.txt")
    assert (tmp_path / "vocab.txt").read_bytes() == fixture.read_bytes()


def test_ids_in_any_order(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("b 1\n<blank> 0\n", encoding="utf-8")
    assert Vocabulary.load(path).tokens == ["<blank>", "b"]


@pytest.mark.parametrize("text, line, message", [
    ("<blank> 0\n<unk> 1 x\n", 2, "expected 'TOKEN ID'"),
    ("<blank> 0\n\n", 2, "expected 'TOKEN ID'"),
    ("<blank> 0\na one\n", 2, "is not an integer"),
    ("<blank> 0\na 1\nb 1\n", 3, "duplicate id 1 \\(first on line 2\\)"),
    ("<blank> 0\na 1\na 2\n", 3, "duplicate token 'a'"),
    ("<blank> 0\na 1\nb 3\nc 4\n", 3, "id 2 is missing"),
    ("a -1\n", 1, "negative id"),
])
def test_malformed_lines(tmp_path, text, line, message):
    path = tmp_path / "vocab.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}:{line}: .*{message}") as error:
        Vocabulary.load(path)
    assert "\n" not in str(error.value)


VOCAB = Vocabulary(["<blank>", "<unk>", "▁xin", "▁ch", "ào", "▁", "9", "▁các", "<sos/eos>"])


def test_ids_to_text():
    assert VOCAB.ids_to_text([2, 3, 4, 7]) == "xin chào các"
    assert VOCAB.ids_to_text([0, 2, 1, 3, 8, 4]) == "xin chào"   # specials never in text
    assert VOCAB.ids_to_text([5, 6, 2]) == "9 xin"
    assert VOCAB.ids_to_text([]) == ""


def test_ids_to_words():
    ids = [4, 2, 3, 1, 4, 5, 7, 5, 6]
    words = VOCAB.ids_to_words(ids, [10, 11, 12, 13, 14, 15, 16, 17, 18])
    # "ào" opens the first word; <unk> is skipped inside "chào"; a lone ▁ before "▁các" is empty
    assert words == [("ào", 0, 0), ("xin", 1, 1), ("chào", 2, 4), ("các", 6, 6), ("9", 7, 8)]
    with pytest.raises(ValueError, match="2 ids but 1 times"):
        VOCAB.ids_to_words([2, 3], [0])
