"""Whole-call scoring on hand-made calls: CER of the time-ordered transcript, words in gaps,
and words on the wrong channel."""
import json
import subprocess
import sys

import pytest

from chunkformer.data.manifest import Utterance
from chunkformer.decoding.call_scoring import gap_seconds, score_calls, turns_by_call, word_hits

TURNS = [  # listed out of order: the scorer sorts by start
    Utterance("c1-t1", "c1.wav", "tôi muốn khóa thẻ", start=3.0, end=5.0, group="c1", channel=1),
    Utterance("c1-t0", "c1.wav", "xin chào quý khách", start=0.5, end=2.5, group="c1",
              channel=0),
    Utterance("c1-t2", "c1.wav", "dạ vâng", start=4.6, end=6.0, group="c1", channel=0),
]


def words(spec):
    """[(word, start, channel)] → result words of 0.2 s each."""
    return [{"word": w, "start": s, "end": s + 0.2, "channel": c} for w, s, c in spec]


PERFECT = words([("xin", 0.6, 0), ("chào", 0.9, 0), ("quý", 1.3, 0), ("khách", 1.8, 0),
                 ("tôi", 3.1, 1), ("muốn", 3.5, 1), ("khóa", 3.9, 1), ("thẻ", 4.3, 1),
                 ("dạ", 4.7, 0), ("vâng", 5.2, 0)])


def row(ws):
    return {"c1": {"key": "c1", "text": " ".join(w["word"] for w in ws), "words": ws}}


def test_word_hits_is_the_best_alignment():
    assert word_hits("a b c d".split(), "a x c d".split()) == 3
    assert word_hits("a b".split(), "b a".split()) == 1
    assert word_hits([], "a".split()) == 0


def test_a_perfect_transcript():
    s = score_calls(row(PERFECT), turns_by_call(TURNS))
    assert s.calls == 1 and s.chars.errors == 0 and s.words.errors == 0
    assert s.gap_insertions == 0 and s.attribution == 1.0
    assert s.gap_seconds == pytest.approx(0.3 + 0.1)  # [0, 0.3) and [2.7, 2.8)


def test_gap_insertions_and_wrong_channels_are_counted():
    ws = [dict(w) for w in PERFECT]
    ws[4]["channel"] = 0  # "tôi" heard on the agent's side
    ws.insert(4, {"word": "chúc", "start": 2.71, "end": 2.79, "channel": 1})  # in the gap
    s = score_calls(row(ws), turns_by_call(TURNS))
    assert s.gap_insertions == 1 and s.words.errors == 1
    assert s.hits == 10 and s.attributed == 9 and s.attribution == pytest.approx(0.9)
    assert "1 words inserted" in s.summary() and "90.0%" in s.summary()


def test_mono_results_have_no_attribution():
    ws = [{k: v for k, v in w.items() if k != "channel"} for w in PERFECT]
    s = score_calls(row(ws), turns_by_call(TURNS))
    assert s.attribution is None and "channel" not in s.summary()


def test_gap_seconds():
    turns = turns_by_call(TURNS)["c1"]
    assert gap_seconds(turns, 0.0, 10.0) == pytest.approx(0.5 + 0.5 + 4.0)


def test_tool(tmp_path):
    (tmp_path / "turns.list").write_text("".join(
        json.dumps({"key": t.key, "wav": t.audio, "txt": t.text, "start": t.start, "end": t.end,
                    "group": t.group, "channel": t.channel}, ensure_ascii=False) + "\n"
        for t in TURNS))
    (tmp_path / "result.jsonl").write_text(json.dumps(row(PERFECT)["c1"], ensure_ascii=False))
    r = subprocess.run([sys.executable, "-m", "chunkformer.bin.score_calls", "--hyp",
                        str(tmp_path / "result.jsonl"), "--turns", str(tmp_path / "turns.list"),
                        "--json", str(tmp_path / "s.json")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "CER 0.00 %" in r.stdout
    assert json.loads((tmp_path / "s.json").read_text())["attribution"] == 100.0
    (tmp_path / "bad.jsonl").write_text('{"text": "x"}\n')
    r = subprocess.run([sys.executable, "-m", "chunkformer.bin.score_calls", "--hyp",
                        str(tmp_path / "bad.jsonl"), "--turns", str(tmp_path / "turns.list")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "bad.jsonl:1: not a recognize result row" in r.stderr
