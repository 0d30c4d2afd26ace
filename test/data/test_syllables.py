"""Random Vietnamese syllables: spelled as the orthography spells them, drawn reproducibly, and
only into train's shuffled utterances."""
import random
import re
import unicodedata
from collections import Counter

import pytest

from chunkformer.data.syllables import PAIRS, random_syllable, spell
from chunkformer.data.synthetic import plan_corpus, train_vocabulary

HUYEN, SAC, HOI, NGA, NANG = "\u0300", "\u0301", "\u0309", "\u0303", "\u0323"


@pytest.mark.parametrize("onset, rhyme, tone, written", [
    ("k", "iêu", "", "kiêu"), ("k", "a", SAC, "cá"), ("k", "e", "", "ke"),
    ("ng", "iêng", "", "nghiêng"), ("ng", "a", "", "nga"), ("g", "e", "", "ghe"),
    ("", "iên", SAC, "yến"), ("ng", "uyên", NGA, "nguyễn"), ("kh", "oa", SAC, "khóa"),
    ("ng", "oai", HUYEN, "ngoài"), ("th", "uy", HOI, "thủy"), ("h", "uynh", HUYEN, "huỳnh"),
    ("h", "oanh", NANG, "hoạnh"), ("m", "ia", SAC, "mía"), ("gi", "a", SAC, "giá"),
    ("gi", "i", HUYEN, "gì"), ("qu", "a", SAC, "quá"), ("qu", "ân", "", "quân"),
    ("ng", "ươi", HUYEN, "người"), ("r", "ươu", NANG, "rượu"), ("h", "uê", SAC, "huế"),
    ("m", "uôi", SAC, "muối"), ("h", "iêu", HOI, "hiểu"), ("m", "ây", SAC, "mấy"),
    ("m", "ưa", "", "mưa"), ("t", "oan", HUYEN, "toàn"), ("ch", "ương", "", "chương"),
])
def test_spelling_rules(onset, rhyme, tone, written):
    assert spell(onset, rhyme, tone) == written


def test_every_drawn_syllable_is_one_well_formed_word():
    rng = random.Random(7)
    drawn = [random_syllable(rng) for _ in range(5000)]
    assert drawn == [random_syllable(r) for r in [random.Random(7)] for _ in range(5000)]
    for s in drawn:
        assert s == unicodedata.normalize("NFC", s) and re.fullmatch(r"\w+", s), s
        assert not re.match(r"(c[ieêy]|k[aăâoôơuư]|g[eê]|ng[ieê]|q(?!u))", s), s
        marks = [c for c in unicodedata.normalize("NFD", s) if c in (HUYEN, SAC, HOI, NGA, NANG)]
        assert len(marks) <= 1, s
        if re.search(r"(p|t|c|ch)$", s):  # checked syllables: sắc or nặng only
            assert marks and marks[0] in (SAC, NANG), s
    # the draw covers the inventory: thousands of distinct syllables, every onset and tone
    assert len(set(drawn)) > 2500 and len(PAIRS) > 2000
    assert {c for s in drawn for c in unicodedata.normalize("NFD", s)} >= {
        HUYEN, SAC, HOI, NGA, NANG}


def test_novel_words_go_into_train_shuffled_utterances_only():
    vocabulary = set(train_vocabulary())
    plain = plan_corpus(400, 30, 60, seed=2, shuffled_fraction=0.5, even_word_fraction=0.5)
    novel = plan_corpus(400, 30, 60, seed=2, shuffled_fraction=0.5, even_word_fraction=0.5,
                        novel_word_fraction=0.4)
    assert novel["dev"] == plain["dev"] and novel["test"] == plain["test"]
    for a, b in zip(plain["train"], novel["train"]):  # natural sentences are untouched
        assert a.shuffled == b.shuffled and (a.shuffled or a.text == b.text)
    shuffled = Counter(w for u in novel["train"] if u.shuffled for w in u.text.split())
    outside = sum(n for w, n in shuffled.items() if w not in vocabulary)
    assert 0.3 < outside / sum(shuffled.values()) < 0.45  # ~0.4, less the draws in vocabulary
    with pytest.raises(ValueError, match="novel_word_fraction"):
        plan_corpus(10, 1, 1, novel_word_fraction=2.0)
