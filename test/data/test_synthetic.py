"""Synthetic call-center corpus: Vietnamese readings, the plan's held-out guarantees, the mu-law
codec against sox, and a tiny corpus rendered end to end (audio, Kaldi lists, data.list)."""
import json
import random
import subprocess
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from chunkformer.bin.synthesize_corpus import main
from chunkformer.data.augment import mulaw_decode, mulaw_encode
from chunkformer.data.manifest import read_manifest
from chunkformer.data.synthetic import (
    HELD_OUT_VARIANTS, TEMPLATES, TRAIN_VARIANTS, date_to_words, digits_to_words, fill_template,
    money_to_words, number_to_words, plan_corpus, train_vocabulary, time_to_words,
    write_corpus)
from chunkformer.data.text import normalize_text

TINY = dict(num_train=6, num_dev=2, num_test=4, seed=0)


@pytest.mark.parametrize("n, words", [
    (0, "không"), (5, "năm"), (10, "mười"), (11, "mười một"), (14, "mười bốn"),
    (15, "mười lăm"), (20, "hai mươi"), (21, "hai mươi mốt"), (24, "hai mươi bốn"),
    (25, "hai mươi lăm"), (101, "một trăm linh một"), (105, "một trăm linh năm"),
    (110, "một trăm mười"), (115, "một trăm mười lăm"), (1000, "một nghìn"),
    (1005, "một nghìn không trăm linh năm"), (2025, "hai nghìn không trăm hai mươi lăm"),
    (1500000, "một triệu năm trăm nghìn"), (1005000, "một triệu không trăm linh năm nghìn"),
    (2000500000, "hai tỷ năm trăm nghìn"), (10**12, "một nghìn tỷ"),
])
def test_number_to_words(n, words):
    assert number_to_words(n) == words


@pytest.mark.parametrize("n, style, words", [
    (105, "south", "một trăm lẻ năm"), (3000, "south", "ba ngàn"),
    (25, "colloquial", "hai mươi nhăm"), (24, "colloquial", "hai mươi tư"),
    (15, "colloquial", "mười lăm"), (14, "colloquial", "mười bốn"),
])
def test_number_styles(n, style, words):
    assert number_to_words(n, style) == words


@pytest.mark.parametrize("bad", [-1, 1.5, True, "7"])
def test_number_errors(bad):
    with pytest.raises(ValueError, match="number_to_words"):
        number_to_words(bad)
    with pytest.raises(ValueError, match="unknown style"):
        number_to_words(1, "west")


def test_readings():
    assert money_to_words(2500000) == "hai triệu năm trăm nghìn đồng"
    assert date_to_words(15, 3, 2025) == (
        "ngày mười lăm tháng ba năm hai nghìn không trăm hai mươi lăm")
    assert date_to_words(5, 4, mung=True) == "mùng năm tháng tư"
    assert time_to_words(14, 30) == "mười bốn giờ ba mươi phút"
    assert time_to_words(14, 30, twelve_hour=True) == "hai giờ rưỡi chiều"
    assert time_to_words(9, 5, twelve_hour=True) == "chín giờ năm phút sáng"
    assert digits_to_words("0912") == "không chín một hai"
    with pytest.raises(ValueError):
        digits_to_words("09-12")


def test_templates_fill_as_transcripts():
    rng = random.Random(0)
    for intent, roles in TEMPLATES.items():
        for role, templates in roles.items():
            assert any(t.startswith("*") for t in templates), (intent, role)
            assert any(not t.startswith("*") for t in templates), (intent, role)
            for t in templates:
                for held_out in (False, True):
                    text = fill_template(t.lstrip("*"), rng, "south", held_out)
                    assert normalize_text(text) == text, text
                    assert all(c.isalpha() or c == " " for c in text), text


@pytest.fixture(scope="module")
def plan():
    return plan_corpus(1200, 100, 200, seed=0)


def test_plan_is_deterministic(plan):
    assert plan_corpus(1200, 100, 200, seed=0) == plan
    assert plan_corpus(1200, 100, 200, seed=1)["train"] != plan["train"]


def test_plan_held_out(plan):
    train, dev, test = (plan[s] for s in ("train", "dev", "test"))
    train_texts = {u.text for u in train}
    assert len(train_texts) >= 500  # several hundred distinct sentences
    assert not train_texts & {u.text for u in dev + test}
    assert len({u.text for u in dev + test}) == len(dev + test)
    assert {u.intent for u in train} == set(TEMPLATES)
    train_chars, train_words = set("".join(train_texts)), Counter(" ".join(train_texts).split())
    test_words = " ".join(u.text for u in test).split()
    assert set("".join(test_words)) <= train_chars
    assert sum(w not in train_words for w in test_words) < 0.1 * len(test_words)
    variant = lambda u: u.speaker.split("-", 1)[1]  # noqa: E731
    assert {variant(u) for u in train + dev} <= set(TRAIN_VARIANTS)
    assert {variant(u) for u in test if u.unseen_voice} <= set(HELD_OUT_VARIANTS)
    assert not set(TRAIN_VARIANTS) & set(HELD_OUT_VARIANTS)
    assert sum(u.unseen_voice for u in test) == 100
    assert 0 < sum(u.unseen_template for u in test) < 200
    assert not any(u.unseen_template or u.unseen_voice for u in train + dev)
    assert [sum(u.line == "telephone" for u in plan[s]) for s in plan] == [600, 50, 100]
    assert {u.emotion for u in train} == {"calm", "happy", "sad", "angry"}


def test_plan_shuffled_sentences(monkeypatch):
    drawn, shuffle = [], random.Random.shuffle

    def record(rng, words):  # the words of the two sentences, before they are shuffled
        drawn.append(list(words))
        shuffle(rng, words)

    monkeypatch.setattr(random.Random, "shuffle", record)
    plan = plan_corpus(200, 20, 20, seed=3, shuffled_fraction=0.4)
    shuffled = [u for u in plan["train"] if u.shuffled]
    assert len(shuffled) == len(drawn) == 80
    assert not any(u.shuffled for u in plan["dev"] + plan["test"])
    texts = {u.text for u in plan["train"] if not u.shuffled}
    for u, words in zip(shuffled, drawn):
        spoken = u.text.split()
        assert not Counter(spoken) - Counter(words) and 0 < len(spoken) < len(words)
        assert u.text not in texts
    assert {u.intent for u in shuffled} == set(TEMPLATES)
    assert not any(u.shuffled for u in plan_corpus(50, 5, 5, seed=3)["train"])
    with pytest.raises(ValueError, match="shuffled_fraction"):
        plan_corpus(10, 1, 1, shuffled_fraction=-0.1)


def test_plan_even_words_come_from_the_train_vocabulary_only():
    vocabulary = set(train_vocabulary())
    plan = plan_corpus(600, 40, 80, seed=4, shuffled_fraction=1.0, even_word_fraction=0.5)
    train_words = Counter(w for u in plan["train"] for w in u.text.split())
    assert len(set(train_words) & vocabulary) > 0.97 * len(vocabulary)
    natural = plan_corpus(600, 40, 80, seed=4, shuffled_fraction=1.0)
    natural_words = Counter(w for u in natural["train"] for w in u.text.split())
    rare = [w for w, n in natural_words.items() if n <= 3]  # words of rare templates
    assert rare and sum(train_words[w] for w in rare) > 3 * sum(natural_words[w] for w in rare)
    # words that only the test's "*" templates say (not also train slot values) are never heard
    # in training
    said = {True: set(), False: set()}
    for roles in TEMPLATES.values():
        for templates in roles.values():
            for t in templates:
                said[t.startswith("*")].update(w for w in t.lstrip("*").split() if "{" not in w)
    unseen_only = said[True] - said[False] - vocabulary  # a few are also slot values
    assert len(unseen_only) > 25 and not unseen_only & set(train_words)
    # words outside the vocabulary come from natural sentences only: rare slot values
    assert len(set(train_words) - vocabulary - natural_words.keys()) <= 3
    with pytest.raises(ValueError, match="even_word_fraction"):
        plan_corpus(10, 1, 1, even_word_fraction=1.5)
    # the shuffle settings change train only: dev and test stay the same sentences and voices
    plain = plan_corpus(600, 40, 80, seed=4)
    assert plain["dev"] == plan["dev"] and plain["test"] == plan["test"]


def test_mulaw_matches_sox(tmp_path):
    x = np.arange(-32768, 32768, dtype=np.int16)
    raw = ["-t", "raw", "-r", "8000", "-c", "1"]
    cmd = ["sox", "-D", *raw, "-e", "signed", "-b", "16", "-",  # -D: no dither
           *raw, "-e", "mu-law", "-b", "8", "-"]
    codes = np.frombuffer(subprocess.run(cmd, input=x.tobytes(), capture_output=True,
                                         check=True).stdout, dtype=np.uint8)
    np.testing.assert_array_equal(mulaw_encode(x), codes)
    wav = tmp_path / "mulaw.wav"
    subprocess.run(["sox", *raw, "-e", "mu-law", "-b", "8", "-", str(wav)],
                   input=codes.tobytes(), check=True)
    np.testing.assert_array_equal(mulaw_decode(codes), sf.read(wav, dtype="int16")[0])


def _lists(folder):
    return {name: (folder / name).read_text(encoding="utf-8").splitlines()
            for name in ("wav.scp", "text", "utt2spk", "utt2dur", "data.list")}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 6/2/4 corpus rendered with two jobs → (folder, plan)."""
    folder = tmp_path_factory.mktemp("synth")
    tiny_plan = plan_corpus(**TINY)
    write_corpus(folder, tiny_plan, jobs=2, progress=False)
    return folder, tiny_plan


def test_tiny_corpus_files(tiny):
    folder, tiny_plan = tiny
    for split, items in tiny_plan.items():
        lists = _lists(folder / split)
        keys = sorted(u.key for u in items)
        for name, lines in lists.items():
            if name != "data.list":
                assert [line.split(" ", 1)[0] for line in lines] == keys, name
        rows = [json.loads(line) for line in lists["data.list"]]
        assert [r["key"] for r in rows] == keys
        by_key = {u.key: u for u in items}
        text = dict(line.split(" ", 1) for line in lists["text"])
        durations = dict(line.split() for line in lists["utt2dur"])
        for row in rows:
            u = by_key[row["key"]]
            assert (row["txt"], row["speaker"], row["intent"], row["emotion"], row["role"]) == (
                u.text, u.speaker, u.intent, u.emotion, u.role) and text[u.key] == u.text
            assert row["line"] == u.line and row["unseen_voice"] == u.unseen_voice
            samples, rate = sf.read(row["wav"], dtype="int16")
            assert rate == (8000 if u.line == "telephone" else 16000)
            assert len(samples) / rate == pytest.approx(float(durations[u.key]), abs=1e-3)
            assert 0.5 < row["duration"] < 20
            assert np.sqrt(np.mean(samples.astype(np.float64) ** 2)) > 300  # not silent
            # a noise floor everywhere: no run of 10 ms of digital silence
            runs = np.convolve(samples == 0, np.ones(rate // 100, dtype=int), "valid")
            assert runs.max() < rate // 100, (u.key, u.line)
        assert [i.key for i in read_manifest(folder / split / "data.list")] == keys
        assert [i.text for i in read_manifest(folder / split)] == [text[k] for k in keys]
    assert any(r["unseen_voice"] for r in map(json.loads, _lists(folder / "test")["data.list"]))


def test_tiny_corpus_is_repeatable_and_resumable(tiny, tmp_path):
    folder, tiny_plan = tiny
    again = write_corpus(tmp_path, tiny_plan, jobs=1, progress=False)
    assert not any(s.skipped for s in again)
    for split, items in tiny_plan.items():
        assert _lists(tmp_path / split)["text"] == _lists(folder / split)["text"]
        for u in items:
            a, b = (sf.read(f / split / "wav" / f"{u.key}.wav", dtype="int16")[0]
                    for f in (folder, tmp_path))
            np.testing.assert_array_equal(a, b)
    wav = tmp_path / "train" / "wav" / f"{tiny_plan['train'][0].key}.wav"
    mtime = wav.stat().st_mtime_ns
    assert all(s.skipped for s in write_corpus(tmp_path, tiny_plan, progress=False))
    assert wav.stat().st_mtime_ns == mtime
    changed = plan_corpus(**{**TINY, "num_test": 3})
    summaries = write_corpus(tmp_path, changed, progress=False)
    assert [s.skipped for s in summaries] == [True, True, False]
    assert len(list((tmp_path / "test" / "wav").glob("*.wav"))) == 3


def test_cli(tmp_path, capsys):
    args = ["--out_dir", tmp_path, "--num_train", 3, "--num_dev", 1, "--num_test", 2,
            "--no_progress"]
    assert main([str(a) for a in args + ["--num_test_calls", 1]]) == 0
    out = capsys.readouterr().out
    assert "train: 3 utterances" in out and "total:" in out
    assert "test_calls: 1 two-channel 8 kHz calls" in out and "dev_calls" not in out
    assert (tmp_path / "test" / ".done").is_file()
    assert (tmp_path / "test_calls" / "turns_stereo.list").is_file()
    with pytest.raises(SystemExit, match="'telephone_fraction': 2.0"):
        main([str(a) for a in args + ["--telephone_fraction", 2]])
