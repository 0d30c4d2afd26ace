"""ARPA files: backoff queries against hand-computed values, round trips, malformed files."""
import gzip

import pytest

from chunkformer.lm.arpa import ArpaError, NgramLM, read_arpa, write_arpa

HAND = """\\data\\
ngram 1=4
ngram 2=2

\\1-grams:
-1.0\t<unk>
-99\t<s>\t-0.3
-0.5\ta\t-0.2
-0.7\t</s>

\\2-grams:
-0.1\t<s> a
-0.4\ta </s>

\\end\\
"""


@pytest.fixture
def hand(tmp_path):
    path = tmp_path / "hand.arpa"
    path.write_text(HAND, encoding="utf-8")
    return path


def test_backoff_queries_by_hand(hand):
    lm = NgramLM.load(hand)
    assert lm.order == 2 and lm.counts() == {1: 4, 2: 2}
    assert lm.log10_prob(("<s>",), "a") == pytest.approx(-0.1)  # listed bigram
    assert lm.log10_prob(("a",), "</s>") == pytest.approx(-0.4)
    assert lm.log10_prob(("a",), "a") == pytest.approx(-0.2 - 0.5)  # backoff(a) + p(a)
    assert lm.log10_prob(("<s>",), "zz") == pytest.approx(-0.3 - 1.0)  # unknown → <unk>
    assert lm.log10_prob(("</s>",), "a") == pytest.approx(-0.5)  # no backoff listed: 0
    assert lm.log10_prob(("x", "y", "<s>"), "a") == pytest.approx(-0.1)  # only the tail
    assert lm.sentence_log10(["a"]) == pytest.approx(-0.1 - 0.4)
    assert lm.sentence_log10(["a", "a"]) == pytest.approx(-0.1 - 0.7 - 0.4)


def test_without_unk_an_unknown_word_gets_the_floor(tmp_path):
    path = tmp_path / "nounk.arpa"
    path.write_text(HAND.replace("ngram 1=4", "ngram 1=3").replace("-1.0\t<unk>\n", ""))
    assert NgramLM.load(path, unk_log10=-7.0).log10_prob((), "zz") == -7.0


@pytest.mark.parametrize("name", ["lm.arpa", "lm.arpa.gz"])
def test_round_trip(hand, tmp_path, name):
    entries = read_arpa(hand)
    out = tmp_path / name
    write_arpa(entries, out)
    if name.endswith(".gz"):
        with gzip.open(out, "rt", encoding="utf-8") as f:
            assert f.read().startswith("\n\\data\\")
    assert read_arpa(out) == entries
    assert not list(tmp_path.glob(".tmp*"))


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("\\end\\\n", ""), "no \\end\\"),
    (lambda t: t.replace("ngram 2=2", "ngram 2=3"), "declares 3 2-grams, the file has 2"),
    (lambda t: t.replace("-0.4\ta </s>", "x\ta </s>"), "hand.arpa:13: not a number"),
    (lambda t: t.replace("-0.4\ta </s>", "-0.4\ta"), "hand.arpa:13: a 2-gram line"),
    (lambda t: t.replace("\\data\\\n", ""), "not declared"),
    (lambda t: "just text\n", "no \\data\\ section"),
])
def test_malformed_files_name_the_problem(hand, edit, message):
    hand.write_text(edit(HAND), encoding="utf-8")
    with pytest.raises(ArpaError, match=message.replace("\\", "\\\\")):
        read_arpa(hand)
