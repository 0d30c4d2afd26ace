"""Long-form training examples: the plan (neighbours in time order, random joins, target
lengths, every row once), the joined example (members' features and gap frames in order,
targets joined), bad members skipped, and the same examples from lists, precomputed features and
shards, deterministic and exactly resumable."""
import numpy as np
import pytest
import soundfile as sf
import torch

from chunkformer.data.audio import load_row
from chunkformer.data.augment import band_limit
from chunkformer.data.dataset import ExampleBuilder, SpeechDataset, Skipped, write_feats_scp
from chunkformer.data.features import compute_fbank
from chunkformer.data.loader import build_data
from chunkformer.data.long_form import (Composition, LongFormConfig, LongFormPlanner, Timing,
                                        gap_frames, is_narrowband, neighbour_order)
from chunkformer.data.manifest import Utterance
from chunkformer.data.sampler import DynamicBatchSampler
from chunkformer.data.shards import write_shards
from pipeline_helpers import SyllableTokenizer, speech_rows

LONG = {"prob": 1.0, "seconds": [4.0, 9.0], "gap": [0.3, 1.0]}
PLAIN = {"num_workers": 0, "speed_perturb": None, "spec_augment": None,
         "fbank": {"dither": 0.0}, "max_frames_in_batch": 2000, "sort_window": 8}


@pytest.fixture(scope="module")
def calls(vi_speech, tmp_path_factory):
    """Two 'calls': the four espeak-ng utterances one after another with 0.5-2.5 s pauses
    (and a second copy in the other order) → rows with group, start and end, listed out of
    time order."""
    folder, rows = tmp_path_factory.mktemp("calls"), []
    waves = [sf.read(str(p), dtype="int16")[0] for p, _ in vi_speech]
    texts = [t for _, t in vi_speech]
    for c, order in enumerate(([0, 1, 2, 3, 0, 1], [3, 2, 1, 0, 2, 3])):
        pieces, at, times = [], 0, []
        for n, i in enumerate(order):
            pause = int((0.5 + 0.4 * n) * 16000)
            pieces += [np.zeros(pause, np.int16), waves[i]]
            times.append((at + pause, at + pause + len(waves[i]), i))
            at += pause + len(waves[i])
        path = folder / f"call{c}.wav"
        sf.write(str(path), np.concatenate(pieces), 16000)
        for n, (s, e, i) in enumerate(times):
            rows.append(Utterance(f"call{c}-{n}", str(path), texts[i], start=s / 16000,
                                  end=e / 16000, duration=(e - s) / 16000, group=f"call{c}"))
    return rows[::-1]


@pytest.fixture(scope="module")
def loose(vi_speech):
    return speech_rows(vi_speech, copies=3)


def test_config_is_checked():
    with pytest.raises(ValueError, match="did you mean data.long_form.seconds"):
        LongFormConfig.from_dict({"second": [1, 2]})
    with pytest.raises(ValueError, match="seconds"):
        LongFormConfig.from_dict({"seconds": [30, 20]})
    with pytest.raises(ValueError, match="prob"):
        LongFormConfig.from_dict({"prob": 1.5})
    with pytest.raises(ValueError, match="'hum'"):
        LongFormConfig.from_dict({"gap_kinds": {"hum": 1}})
    with pytest.raises(ValueError, match="not all 0"):
        LongFormConfig.from_dict({"gap_kinds": {"line": 0}})
    with pytest.raises(ValueError, match="class label"):
        ExampleBuilder(None, label_fields={"intent": {"a": 0}},
                       long_form=LongFormConfig.from_dict({}))


def test_plan_joins_neighbours_in_time_order(calls, loose):
    rows = calls + loose
    timing = Timing.of_rows(rows)
    planner = LongFormPlanner(LongFormConfig.from_dict(LONG), timing)
    for epoch in range(3):
        rng = np.random.default_rng([0, epoch])
        units = planner.units(neighbour_order(timing, rng), rng)
        members = [m for u in units for m in (u.members if isinstance(u, Composition) else [u])]
        assert sorted(members) == list(range(len(rows)))  # every row once
        joined = [u for u in units if isinstance(u, Composition)]
        assert joined
        for u in joined:
            total = sum(rows[m].duration for m in u.members) + sum(u.gaps)
            assert total <= LONG["seconds"][1] and len(u.gaps) == len(u.members) - 1
            for a, b, gap in zip(u.members, u.members[1:], u.gaps):
                ra, rb = rows[a], rows[b]
                assert LONG["gap"][0] <= gap <= LONG["gap"][1]
                if ra.group is not None and ra.group == rb.group:
                    assert rb.start > ra.start  # time order within a call
                    assert gap == pytest.approx(min(max(rb.start - ra.end, 0.3), 1.0))
        call_units = [u for u in joined if rows[u.members[0]].start is not None
                      and rows[u.members[1]].group == rows[u.members[0]].group]
        assert call_units  # calls' turns are joined with their neighbours
    late = LongFormConfig.from_dict({**LONG, "start_epoch": 2})
    sampler = DynamicBatchSampler([100] * len(rows), 2000, long_form=LongFormPlanner(late, timing))
    assert all(isinstance(u, int) for b in sampler.global_batches(1) for u in b)
    assert any(isinstance(u, Composition) for b in sampler.global_batches(2) for u in b)
    off = LongFormPlanner(LongFormConfig.from_dict({**LONG, "prob": 0.0}), timing)
    rng = np.random.default_rng(0)
    assert off.units(list(range(len(rows))), rng) == list(range(len(rows)))


def test_joined_example_is_members_and_gaps(loose):
    rows = loose[:3]
    build = ExampleBuilder(SyllableTokenizer(), long_form=LongFormConfig.from_dict(LONG))
    gaps = (0.5, 0.8)
    [example] = build.compose(rows, gaps, torch.Generator().manual_seed(0))
    fbanks = [compute_fbank(load_row(r)) for r in rows]
    at = 0
    for i, f in enumerate(fbanks):
        assert torch.equal(example["feats"][at:at + f.size(0)], f)
        at += f.size(0) + (gap_frames(gaps[i]) if i < len(gaps) else 0)
    assert example["feats"].size(0) == at
    joined = " ".join(r.text for r in rows)
    assert example["targets"].tolist() == SyllableTokenizer().encode(joined)[0]
    assert example["key"] == "+".join(r.key for r in rows) and example["rows"] == 3
    assert example["audio_seconds"] == sum(load_row(r).numel() for r in rows) / 16000
    gap = example["feats"][fbanks[0].size(0):fbanks[0].size(0) + gap_frames(gaps[0])]
    speech = torch.cat(fbanks).sum(1)
    assert gap.sum(1).mean() < speech.mean()  # a gap is quieter than speech on average


def test_a_bad_member_is_skipped_and_the_rest_joined(loose, tmp_path):
    bad = Utterance("missing", str(tmp_path / "nowhere.wav"), "xin chào", duration=1.0)
    build = ExampleBuilder(SyllableTokenizer(), long_form=LongFormConfig.from_dict(LONG))
    items = build.compose([loose[0], bad, loose[1]], (0.4, 0.6), torch.Generator())
    example, skipped = items
    assert isinstance(skipped, Skipped) and skipped.key == "missing"
    assert example["key"] == f"{loose[0].key}+{loose[1].key}" and example["rows"] == 2
    n0 = compute_fbank(load_row(loose[0])).size(0)
    assert example["feats"].size(0) == (n0 + gap_frames(0.6)
                                        + compute_fbank(load_row(loose[1])).size(0))
    assert build.compose([bad], (), torch.Generator())[0].key == "missing"


def test_narrowband_is_told_from_wideband(loose):
    wave = load_row(loose[0])
    telephone = band_limit(wave.double(), 16000).float()  # what 8 kHz audio looks like at 16 kHz
    assert not is_narrowband(compute_fbank(wave))
    assert is_narrowband(compute_fbank(telephone))


def batch_keys(batches):
    return [b.keys for b in batches]


def same(a, b):
    assert batch_keys(a) == batch_keys(b)
    for x, y in zip(a, b):
        assert torch.equal(x.feats, y.feats) and torch.equal(x.targets, y.targets)


def test_lists_deterministic_resumable_and_complete(calls, loose):
    rows = calls + loose
    conf = {**PLAIN, "spec_augment": {}, "fbank": {"dither": 1.0}, "long_form": LONG}
    full = list(build_data(rows, SyllableTokenizer(), conf, seed=2).batches(1))
    keys = sorted(k for b in full for key in b.keys for k in key.split("+"))
    assert keys == sorted(r.key for r in rows)
    assert sum(b.rows for b in full) == len(rows)
    assert any("+" in key for b in full for key in b.keys)
    for b in full:
        assert sum(b.feats_lens.tolist()) <= conf["max_frames_in_batch"] or len(b.keys) == 1
    same(list(build_data(rows, SyllableTokenizer(), conf, seed=2).batches(1)), full)
    same(list(build_data(rows, SyllableTokenizer(), conf, seed=2).batches(1, start=2)), full[2:])
    workers = build_data(rows, SyllableTokenizer(), {**conf, "num_workers": 2}, seed=2)
    same(list(workers.batches(1)), full)
    other = list(build_data(rows, SyllableTokenizer(), conf, seed=2).batches(2))
    assert batch_keys(other) != batch_keys(full)  # a new plan each epoch
    dev = build_data(rows, SyllableTokenizer(), conf, seed=2, train=False)
    assert all("+" not in key for b in dev.batches(0) for key in b.keys)  # never in evaluation


def test_precomputed_features_join_like_audio(calls, tmp_path):
    scp, skipped = write_feats_scp(calls, tmp_path / "feats")
    assert not skipped
    conf = {**PLAIN, "long_form": LONG}
    from_audio = list(build_data(calls, SyllableTokenizer(), conf, seed=4).batches(0))
    from_feats = list(build_data(calls, SyllableTokenizer(), conf, seed=4,
                                 feats_scp=scp).batches(0))
    assert any("+" in key for b in from_audio for key in b.keys)
    same(from_feats, from_audio)


@pytest.mark.parametrize("workers", [0, 2])
def test_shards_join_neighbours_and_resume(calls, tmp_path, workers):
    ordered = sorted(calls, key=lambda r: (r.group, r.start))
    write_shards(ordered, tmp_path, shard_size=4, progress=False)
    conf = {**PLAIN, "spec_augment": {}, "long_form": LONG, "num_workers": workers}
    shards = tmp_path / "shards.list"
    full = list(build_data(shards, SyllableTokenizer(), conf, seed=3).batches(0))
    keys = [k for b in full for key in b.keys for k in key.split("+")]
    assert sorted(keys) == sorted(r.key for r in calls)
    starts = {r.key: (r.group, r.start) for r in calls}
    for b in full:
        for key in b.keys:
            parts = key.split("+")
            assert [starts[p] for p in parts] == sorted(starts[p] for p in parts)
    assert any("+" in key for b in full for key in b.keys)
    same(list(build_data(shards, SyllableTokenizer(), conf, seed=3).batches(0, 1)), full[1:])


def test_lists_and_dataset_units(loose):
    """A Composition unit of the map-style dataset gives the builder's joined example."""
    build = ExampleBuilder(SyllableTokenizer(), long_form=LongFormConfig.from_dict(LONG))
    data = SpeechDataset(loose, build, seed=1)
    items = data[0, Composition((2, 0), (0.5,))]
    assert items[0]["key"] == f"{loose[2].key}+{loose[0].key}"
    assert isinstance(data[0, 1], dict) and data[0, 1]["key"] == loose[1].key
