"""Modified Kneser-Ney estimation: hand-computed probabilities, the discount formula,
distributions that sum to one after any history, and the ARPA the tool writes."""
import random
from collections import Counter
from pathlib import Path

import pytest

from chunkformer.bin.build_lm import main as build_lm
from chunkformer.lm.arpa import EOS, UNK, NgramLM, read_arpa
from chunkformer.lm.kneser_ney import (FALLBACK_DISCOUNTS, adjusted_counts, count_ngrams,
                                       discounts, estimate)


def test_continuation_counts():
    adjusted = adjusted_counts(count_ngrams([["a", "b"], ["a"], ["c", "b"]], 2))
    # b follows a and c: continuation count 2; </s> follows b and a; a and c follow <s> only
    assert adjusted[0] == Counter({("b",): 2, ("</s>",): 2, ("a",): 1, ("c",): 1})
    assert adjusted[1][("<s>", "a")] == 2  # highest order: raw counts


def test_discount_formula():
    adjusted = Counter({(f"w{i}",): c for i, c in enumerate([1] * 10 + [2] * 5 + [3] * 3
                                                             + [4] * 2 + [9] * 7)})
    d1, d2, d3 = discounts(adjusted)  # Y = 10 / (10 + 2·5) = 0.5
    assert (d1, d2, d3) == pytest.approx((1 - 2 * .5 * 5 / 10, 2 - 3 * .5 * 3 / 5,
                                          3 - 4 * .5 * 2 / 3))
    with pytest.raises(ValueError):
        discounts(Counter({("a",): 1, ("b",): 2}))  # no 3s or 4s: undefined


def test_bigram_probabilities_by_hand():
    """<s> a b </s> and <s> a </s>, discounts 0.5 / 1 / 1.5 (too little text to estimate).
    Unigrams (continuation counts a 1, b 1, </s> 2; total 4; vocabulary a b </s> <unk>):
    γ = (0.5·2 + 1·1) / 4 = 0.5, p(a) = 0.5/4 + 0.5/4 = 0.25, p(</s>) = 1/4 + 0.125,
    p(<unk>) = 0.125. Bigrams: p(a | <s>) = (2 - 1)/2 + γ(<s>) p(a), γ(<s>) = 1·1/2;
    p(b | a) = 0.5/2 + γ(a) p(b), γ(a) = 0.5·2/2; p(</s> | b) = 0.5/1 + 0.5·0.375."""
    result = estimate(count_ngrams([["a", "b"], ["a"]], 2))
    assert result.fallback_orders == [1, 2] and result.discounts[1] == FALLBACK_DISCOUNTS
    lm = NgramLM(result.entries)
    p = lambda history, word: 10 ** lm.log10_prob(history, word)  # noqa: E731
    assert p((), "a") == pytest.approx(0.25) and p((), "b") == pytest.approx(0.25)
    assert p((), EOS) == pytest.approx(0.375) and p((), UNK) == pytest.approx(0.125)
    assert p(("<s>",), "a") == pytest.approx(0.625)
    assert p(("a",), "b") == pytest.approx(0.375)
    assert p(("a",), EOS) == pytest.approx(0.25 + 0.5 * 0.375)
    assert p(("b",), EOS) == pytest.approx(0.6875)
    assert p(("<s>",), "b") == pytest.approx(0.5 * 0.25)  # unseen: γ(<s>) p(b)
    assert p(("a",), "zz") == pytest.approx(0.5 * 0.125)  # unknown word
    assert 10 ** lm.sentence_log10(["a", "b"]) == pytest.approx(0.625 * 0.375 * 0.6875)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_history_gets_a_distribution(order):
    rng = random.Random(order)
    words = "một hai ba bốn năm sáu bảy".split()
    sentences = [[rng.choice(words[:rng.randint(2, 7)]) for _ in range(rng.randint(1, 9))]
                 for _ in range(400)]
    lm = NgramLM(estimate(count_ngrams(sentences, order)).entries)
    vocab = words + [EOS, UNK]
    histories = [(), ("<s>",), ("<s>", "một"), ("hai", "ba", "bốn"), ("bảy", "bảy"), ("zz",)]
    for history in histories + [tuple(rng.choice(words) for _ in range(3)) for _ in range(20)]:
        total = sum(10 ** lm.log10_prob(history, w) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-9), history


def test_build_lm_tool(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("Tôi chuyển 2 triệu.\n\nchuyển tiền\n", encoding="utf-8")
    (tmp_path / "b.list").write_text('{"key": "u1", "txt": "tôi chuyển tiền"}\n'
                                     '{"key": "u2", "text": "chuyển hai triệu"}\n',
                                     encoding="utf-8")
    out = tmp_path / "lm" / "lm.arpa.gz"
    assert build_lm(["--text", str(tmp_path / "a.txt"), str(tmp_path / "b.list"),
                     "--order", "2", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "4 sentences, 12 words, vocabulary 5" in printed and "warning" in printed
    lm = NgramLM.load(out)
    assert lm.contains("hai") and not lm.contains("2")  # numbers written out, as targets
    assert lm.log10_prob(("tôi",), "chuyển") > lm.log10_prob(("tôi",), "tiền")


def test_build_lm_names_a_bad_row(tmp_path, capsys):
    bad = tmp_path / "bad.list"
    bad.write_text('{"txt": "một"}\n{"txt": \n', encoding="utf-8")
    with pytest.raises(SystemExit, match=f"{bad}:2: not JSON"):
        build_lm(["--text", str(bad), "--output", str(tmp_path / "x.arpa")])
    bad.write_text('{"wav": "a.wav"}\n', encoding="utf-8")
    with pytest.raises(SystemExit, match=f"{bad}:1: no text field"):
        build_lm(["--text", str(bad), "--output", str(tmp_path / "x.arpa")])


def test_same_model_as_kenlm_lmplz():
    """``lmplz -o 4 --discount_fallback`` on 400 transcripts (fixtures/lm/README.md)."""
    folder = Path(__file__).resolve().parent.parent / "fixtures" / "lm"
    sentences = [line.split() for line in
                 (folder / "train400.txt").read_text(encoding="utf-8").splitlines()]
    ours = estimate(count_ngrams(sentences, 4)).entries
    kenlm = read_arpa(folder / "lmplz_o4.arpa.gz")
    assert set(ours) == set(kenlm) and len(ours) == 555 + 4415 + 4685 + 4419
    for gram, (prob, backoff) in kenlm.items():
        if gram != ("<s>",):  # never predicted: KenLM writes 0, we -99
            assert ours[gram][0] == pytest.approx(prob, abs=2e-6), gram
        assert ours[gram][1] == pytest.approx(backoff, abs=2e-6), gram
