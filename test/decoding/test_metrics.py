"""WER / CER on hand-computed cases, including Vietnamese diacritics."""
import unicodedata

import pytest

from chunkformer.decoding.metrics import ErrorTally, error_counts, error_rate, write_error_report


@pytest.mark.parametrize("ref, hyp, unit, expected", [
    ("xin chào", "xin chao", "word", (1, 2)),
    ("xin chào", "xin chao", "char", (1, 7)),         # spaces are not characters
    ("xin chào", "xinchào", "char", (0, 7)),
    ("xin chào", "xinchào", "word", (2, 2)),          # 1 substitution + 1 deletion
    ("a b c", "a c d e", "word", (3, 3)),             # b deleted, d and e inserted
    ("một hai ba", "", "word", (3, 3)),
    ("", "một", "word", (1, 0)),
    ("Đường   phố", "đường phố", "char", (1, 8)),    # case is not folded
])
def test_error_counts(ref, hyp, unit, expected):
    assert error_counts(ref, hyp, unit) == expected


def test_composed_and_combining_diacritics_are_equal():
    decomposed = unicodedata.normalize("NFD", "người việt")
    assert len(decomposed) > len("người việt")
    assert error_counts("người việt", decomposed, "char") == (0, 9)
    assert error_counts("người việt", decomposed, "word") == (0, 2)


def test_unknown_unit():
    with pytest.raises(ValueError, match="'phone'"):
        error_counts("a", "a", "phone")


def test_error_rate_of_empty_reference():
    assert error_rate(0, 0) == 0.0 and error_rate(2, 0) == float("inf")


def test_tally():
    tally = ErrorTally()
    tally.add(*error_counts("xin chào các bạn", "xin chao các bạn"))
    tally.add(*error_counts("cảm ơn", "cảm ơn"))
    assert (tally.errors, tally.ref_len, tally.utterances) == (1, 6, 2)
    assert tally.rate == pytest.approx(1 / 6)
    assert tally.summary() == "16.67 % [1 / 6]"


def test_report_sorted_by_errors(tmp_path):
    refs = {"u1": ("xin chào", "xin chào"), "u2": ("một hai ba", "một ba"),
            "u3": ("tôi là ai", "tui là ai")}
    rows = [(key, ref, hyp, error_counts(ref, hyp, "word"), error_counts(ref, hyp, "char"))
            for key, (ref, hyp) in refs.items()]
    write_error_report(tmp_path / "errors.tsv", rows)
    lines = (tmp_path / "errors.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t") == ["key", "wer", "cer", "word_errors", "ref_words", "ref", "hyp"]
    # u2 and u3 have one word error each; u2 has more char errors (3 vs 1)
    assert [line.split("\t")[0] for line in lines[1:]] == ["u2", "u3", "u1"]
    assert lines[1].split("\t") == ["u2", "0.3333", "0.3750", "1", "3", "một hai ba", "một ba"]
