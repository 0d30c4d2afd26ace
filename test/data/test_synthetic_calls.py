"""Synthetic whole calls: planned from the seed, new texts, agent and customer alternating on
their own channels with barge-ins; rendered turn times match where the speech is."""
import json

import numpy as np
import pytest
import soundfile as sf

from chunkformer.data.manifest import read_manifest
from chunkformer.data.synthetic_calls import plan_calls, write_calls


def test_plan_is_seeded_new_and_alternating():
    used = {"vâng đúng rồi"}
    calls = plan_calls(5, "test", 0, used)
    assert calls == plan_calls(5, "test", 0, {"vâng đúng rồi"})
    assert calls != plan_calls(5, "test", 1, set())
    texts = [u.text for c in calls for u in c.turns]
    assert len(set(texts)) == len(texts) and "vâng đúng rồi" not in texts
    assert used >= set(texts)
    for c in calls:
        assert [u.role for u in c.turns] == ["bot", "customer"] * (len(c.turns) // 2) + \
            ["bot"] * (len(c.turns) % 2)
        assert len({u.speaker for u in c.turns}) == 2  # one voice per side
        assert 1 <= sum(p < 0 for p in c.pauses[1:]) <= 2 and c.pauses[0] > 0
    with pytest.raises(ValueError, match="dev and test"):
        plan_calls(1, "train", 0, set())


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("calls")
    calls = plan_calls(2, "dev", 3, set())
    assert write_calls(out, "dev", calls, progress=False)[0] == 2
    assert write_calls(out, "dev", calls, progress=False)[2]  # same plan: skipped
    return out / "dev_calls", calls


def test_files_and_lists(written):
    folder, calls = written
    turns = read_manifest(folder / "turns_stereo.list")
    assert len(turns) == sum(len(c.turns) for c in calls)
    for call in calls:
        mono, rate = sf.read(folder / "wav" / f"{call.key}.wav", dtype="int16")
        stereo, _ = sf.read(folder / "wav" / f"{call.key}.stereo.wav", dtype="int16")
        assert rate == 8000 and stereo.shape == (len(mono), 2)
        assert np.array_equal(mono, np.clip(stereo.astype(np.int32).sum(1), -32768, 32767))
        mine = sorted((t for t in turns if t.group == call.key), key=lambda t: t.start)
        starts = [t.start for t in mine]
        assert any(b.start < a.end for a, b in zip(mine, mine[1:]))  # a barge-in overlaps
        for t in mine:
            assert t.channel == ("agent", "customer").index(t.labels["role"])
            inside = stereo[int(t.start * rate):int(t.end * rate), t.channel].astype(float)
            before = stereo[max(0, int((t.start - 0.25) * rate)):int(t.start * rate) - 80,
                            t.channel].astype(float)
            assert np.sqrt((inside**2).mean()) > 4 * np.sqrt((before**2).mean())
        row = json.loads(next(line for line in open(folder / "calls.list")
                              if call.key in line))
        assert row["txt"] == " ".join(t.text for t in mine) and starts == sorted(starts)
    mono_turns = read_manifest(folder / "turns.list")
    assert [t.key for t in mono_turns] == [t.key for t in turns]
    assert all(t.channel is None and t.audio.endswith(".wav") and ".stereo" not in t.audio
               for t in mono_turns)
