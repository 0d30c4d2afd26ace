"""Dynamic batching: frame budget, every utterance once, bucketing, seeds, and the same number
of batches on every rank whatever the data."""
import numpy as np
import pytest

from chunkformer.data.manifest import Utterance
from chunkformer.data.sampler import DynamicBatchSampler, utterance_frames


def lengths(n=237, seed=0):
    return np.random.default_rng(seed).integers(50, 1500, n).tolist()


def flat(batches):
    return sorted(i for b in batches for i in b)


def test_budget_and_coverage():
    frames = lengths() + [5000]  # one utterance over the budget: a batch of its own
    sampler = DynamicBatchSampler(frames, 4000, seed=1)
    batches = sampler.batches(0)
    assert flat(batches) == list(range(len(frames)))
    for b in batches:
        assert sum(frames[i] for i in b) <= 4000 or len(b) == 1
    assert [len(frames) - 1] in batches


def test_length_bucketing_limits_padding():
    frames = lengths(2000)

    def padding(window):
        batches = DynamicBatchSampler(frames, 20000, seed=0, sort_window=window).batches(0)
        padded = sum(max(frames[i] for i in b) * len(b) for b in batches)
        return padded / sum(frames) - 1

    assert padding(2000) < 0.05 < 0.5 < padding(1)


def test_seeded_per_epoch():
    frames = lengths()
    a, b = DynamicBatchSampler(frames, 3000, seed=7), DynamicBatchSampler(frames, 3000, seed=7)
    assert a.batches(3) == b.batches(3)
    assert a.batches(3) != a.batches(4)
    assert a.batches(3) != DynamicBatchSampler(frames, 3000, seed=8).batches(3)
    ordered = DynamicBatchSampler(frames, 3000, shuffle=False)
    assert ordered.batches(0) == ordered.batches(1)


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("n", [1, 2, 5, 100, 237])
def test_every_rank_gets_the_same_number_of_batches(world, n):
    frames = lengths(n, seed=n)
    for uneven in ("drop", "empty"):
        ranks = [DynamicBatchSampler(frames, 3000, seed=0, rank=r, world_size=world,
                                     shuffle=uneven == "drop", uneven=uneven)
                 for r in range(world)]
        for epoch in range(3):
            per_rank = [r.batches(epoch) for r in ranks]
            counts = {len(b) for b in per_rank}
            assert len(counts) == 1 and counts.pop() >= 1, (uneven, epoch)
            assert ranks[0].num_batches(epoch) == len(per_rank[0])
            total = len(ranks[0].global_batches(epoch))
            if uneven == "empty":  # evaluation: each utterance exactly once
                assert flat(b for p in per_rank for b in p) == list(range(n))
            elif total >= world:  # training: disjoint, at most world - 1 batches dropped
                assert len(set(map(tuple, (b for p in per_rank for b in p)))) == \
                    world * len(per_rank[0]) > total - world


def test_no_rows_no_batches():
    sampler = DynamicBatchSampler([], 1000, rank=1, world_size=2)
    assert sampler.batches(0) == [] and sampler.num_batches(0) == 0


def test_frames_from_durations():
    rows = [Utterance("a", "a.wav", duration=1.0), Utterance("b", "b.wav", duration=0.5)]
    assert utterance_frames(rows) == [98, 48]
    assert utterance_frames(rows, stretch=1 / 0.9) == [109, 54]
    with pytest.raises(ValueError, match="no duration.*prepare_data"):
        utterance_frames(rows + [Utterance("c", "c.wav")])


@pytest.mark.parametrize("bad", [dict(max_frames_in_batch=0), dict(rank=2, world_size=2),
                                 dict(uneven="repeat"), dict(sort_window=0)])
def test_bad_arguments(bad):
    with pytest.raises(ValueError):
        DynamicBatchSampler([100], **{"max_frames_in_batch": 1000, **bad})
