"""egs/call_analytics/local/make_lists.py: a synthetic call is one 8 kHz file whose listed
turns are exactly its source utterances (8 and 16 kHz sources alike), and its outcome follows
the dialogue rule."""
import importlib.util
import json
import random
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]


def _make_lists():
    spec = importlib.util.spec_from_file_location(
        "make_lists", ROOT / "egs" / "call_analytics" / "local" / "make_lists.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_calls_are_one_telephone_rate_file_with_exact_turns(tmp_path):
    ml = _make_lists()
    rows, rng = [], np.random.default_rng(0)
    for i in range(8):
        rate = 8000 if i % 2 else 16000  # telephone and wideband sources
        seconds = 0.5 + 0.25 * i
        t = np.arange(int(seconds * rate)) / rate
        wave = (0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t)).astype(np.float32)
        path = tmp_path / f"u{i}.wav"
        sf.write(path, wave, rate)
        rows.append({"key": f"u{i}", "wav": str(path), "txt": f"câu {i}",
                     "speaker": f"v{i % 4}", "role": "bot" if i < 4 else "customer",
                     "intent": ["greeting", "complaint", "confirm", "deny"][i % 4],
                     "emotion": ["calm", "angry"][int(rng.integers(2))]})
    calls = ml.make_calls(rows, "test", tmp_path / "out", 5, random.Random(0))
    by_txt = {r["txt"]: r for r in rows}
    for call in calls:
        info = sf.info(call["wav"])
        assert info.samplerate == ml.RATE == 8000
        assert abs(info.duration - call["duration"]) < 1e-3
        audio, _ = sf.read(call["wav"], dtype="float32")
        roles = [t["role"] for t in call["turns"]]
        assert roles == ["bot", "customer", "bot", "customer"]
        for a, b in zip(call["turns"], call["turns"][1:]):
            assert abs(b["start"] - a["end"] - ml.GAP) < 2e-3  # the gap between turns
        for turn in call["turns"]:
            source = by_txt[turn["txt"]]
            expected = ml.read_at_call_rate(source["wav"])
            assert abs((turn["end"] - turn["start"]) - len(expected) / ml.RATE) < 2e-3
            piece = audio[int(round(turn["start"] * ml.RATE)):][:len(expected)]
            assert np.abs(piece - expected).max() < 2e-3  # 16-bit PCM of the same samples
        utts = [by_txt[t["txt"]] for t in call["turns"]]
        assert call["outcome"] == ml.outcome(roles, utts)
    turn_rows = ml.turn_rows(calls)
    assert len(turn_rows) == 4 * len(calls)
    assert turn_rows[5]["group"] == calls[1]["key"] and turn_rows[5]["role"] == "customer"
    assert json.loads(json.dumps(turn_rows[0], ensure_ascii=False))["start"] == 0.0


def test_outcome_rule():
    ml = _make_lists()

    def u(intent, emotion="calm"):
        return {"intent": intent, "emotion": emotion}
    bot_cust = ["bot", "customer"]
    assert ml.outcome(bot_cust, [u("greeting"), u("deny", "angry")]) == "escalate"
    assert ml.outcome(bot_cust, [u("greeting", "angry"), u("confirm")]) == "pays"  # bot anger
    assert ml.outcome(bot_cust, [u("complaint"), u("confirm")]) == "escalate"
    assert ml.outcome(bot_cust, [u("greeting"), u("deny")]) == "other"
