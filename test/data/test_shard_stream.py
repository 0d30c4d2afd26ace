"""Shards mode: every utterance of the shards once, the same examples as from the manifest,
exact resume without decoding the skipped batches, equal batch counts on every rank."""
import pytest
import torch

from chunkformer.data import shard_stream
from chunkformer.data.loader import build_data
from chunkformer.data.shards import write_shards
from pipeline_helpers import SyllableTokenizer, speech_rows

CONF = {"max_frames_in_batch": 500, "num_workers": 0, "sort_window": 4,
        "speed_perturb": [0.9, 1.0, 1.1], "spec_augment": {}, "telephone": {"prob": 0.5}}


@pytest.fixture(scope="module")
def rows(vi_speech):
    return speech_rows(vi_speech, copies=4)


@pytest.fixture(scope="module")
def shard_list(rows, tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    paths, skipped = write_shards(rows, folder, shard_size=3, progress=False)
    assert len(paths) == 6 and not skipped
    return folder / "shards.list"


def keys(batches):
    return sorted(k for b in batches for k in b.keys)


def test_every_utterance_once(rows, shard_list):
    for train in (True, False):
        data = build_data(shard_list, SyllableTokenizer(), CONF, seed=0, train=train)
        batches = list(data.batches(0))
        assert len(batches) == data.num_batches(0) > 3
        assert keys(batches) == sorted(r.key for r in rows)
        for b in batches:
            assert sum(b.feats_lens.tolist()) <= 500 or len(b.keys) == 1


def test_same_examples_as_the_manifest(rows, shard_list):
    """Without augmentation the shards give the manifest's features and targets."""
    plain = {"num_workers": 0, "speed_perturb": None, "spec_augment": None}
    by_key = {}
    for source in (rows, shard_list):
        for b in build_data(source, SyllableTokenizer(), plain, seed=0, train=False).batches(0):
            for key, f, n, t, u in zip(b.keys, b.feats, b.feats_lens, b.targets, b.target_lens):
                by_key.setdefault(key, []).append((f[:n], t[:u]))
    for key, ((f1, t1), (f2, t2)) in by_key.items():
        assert torch.equal(f1, f2) and torch.equal(t1, t2), key


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_equals_uninterrupted(shard_list, workers, monkeypatch):
    conf = {**CONF, "num_workers": workers}
    full = list(build_data(shard_list, SyllableTokenizer(), conf, seed=1).batches(3))
    decoded = []
    original = shard_stream.decode_audio
    monkeypatch.setattr(shard_stream, "decode_audio",
                        lambda data, what: decoded.append(what) or original(data, what))
    k = 3
    resumed = list(build_data(shard_list, SyllableTokenizer(), conf, seed=1).batches(3, k))
    assert [b.keys for b in resumed] == [b.keys for b in full[k:]]
    for a, b in zip(resumed, full[k:]):
        assert torch.equal(a.feats, b.feats) and torch.equal(a.targets, b.targets)
    if workers == 0:  # decoding happens in this process: count it
        assert len(decoded) == sum(len(b.keys) for b in full[k:])


@pytest.mark.parametrize("world", [2, 3])
def test_every_rank_same_number_of_batches(rows, shard_list, world):
    for train in (True, False):
        ranks = [build_data(shard_list, SyllableTokenizer(), {**CONF, "num_workers": 2}, 0,
                            rank=r, world_size=world, train=train) for r in range(world)]
        for epoch in (0, 1):
            passes = [list(d.batches(epoch)) for d in ranks]
            assert len({len(p) for p in passes}) == 1 and len(passes[0]) >= 1
            assert all(len(p) == d.num_batches(epoch) for p, d in zip(passes, ranks))
            seen = [k for p in passes for k in keys(p)]
            assert len(seen) == len(set(seen))  # no utterance on two ranks
            if not train:
                assert sorted(seen) == sorted(r.key for r in rows)


def test_duration_limits_and_errors(rows, shard_list, tmp_path):
    data = build_data(shard_list, SyllableTokenizer(), {**CONF, "max_duration": 1.5}, seed=0)
    kept = sorted(r.key for r in rows if r.duration <= 1.5)
    assert data.left_out == len(rows) - len(kept) and keys(data.batches(0)) == kept
    with pytest.raises(ValueError, match="precomputed"):
        build_data(shard_list, SyllableTokenizer(), CONF, seed=0, feats_scp=tmp_path / "x.scp")
    (tmp_path / "broken.tar").write_bytes(b"not a tar" * 100)
    (tmp_path / "shards.list").write_text("broken.tar\n")
    with pytest.raises(ValueError, match="broken.tar"):
        build_data(tmp_path / "shards.list", SyllableTokenizer(), CONF, seed=0)
