"""Loader: bad rows skipped and counted while batches go on, same batches for the same seed,
exact resume without loading the skipped batches, equal batch counts on every rank, workers
that neither change the data nor deadlock, and the ``data:`` keys."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from chunkformer.data.dataset import ExampleBuilder, SpeechDataset
from chunkformer.data.loader import build_data
from pipeline_helpers import SyllableTokenizer, bad_rows, speech_rows

AUGMENTED = {"max_frames_in_batch": 700, "num_workers": 0, "speed_perturb": [0.9, 1.0, 1.1],
             "telephone": {"prob": 0.5}, "spec_augment": {}, "fbank": {"dither": 1.0}}


@pytest.fixture(scope="module")
def rows(vi_speech):
    return speech_rows(vi_speech, copies=4)  # 16 rows, 0.7-2.6 s


def same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys == y.keys and x.skipped == y.skipped
        for name in ("feats", "feats_lens", "targets", "target_lens"):
            assert torch.equal(getattr(x, name), getattr(y, name)), name


def test_bad_rows_skipped_and_counted(tmp_path, rows, caplog):
    bad, kinds = bad_rows(tmp_path, rows[0].audio)
    data = build_data(rows + bad, SyllableTokenizer(), {**AUGMENTED, "max_frames_in_batch": 300},
                      seed=0)
    batches = list(data.batches(0))
    assert len(batches) == data.num_batches(0) > 1
    assert sorted(k for b in batches for k in b.keys) == sorted(r.key for r in rows)
    skipped = {s.key: s.reason for b in batches for s in b.skipped}
    assert {k: r.split(":")[0] for k, r in skipped.items()} == kinds
    assert sum(data.skip_counts.values()) == len(bad)
    assert "6 items skipped" in caplog.text and "unreadable audio 2" in caplog.text
    for b in batches:
        assert b.feats.size(0) == len(b.keys) and b.audio_seconds > 0 or not b.keys


def test_same_seed_same_batches(rows):
    first = list(build_data(rows, SyllableTokenizer(), AUGMENTED, seed=3).batches(1))
    again = list(build_data(rows, SyllableTokenizer(), AUGMENTED, seed=3).batches(1))
    same_batches(first, again)
    other = list(build_data(rows, SyllableTokenizer(), AUGMENTED, seed=4).batches(1))
    assert [b.keys for b in other] != [b.keys for b in first]


def test_resume_equals_uninterrupted_and_skips_loading(rows, monkeypatch):
    full = list(build_data(rows, SyllableTokenizer(), AUGMENTED, seed=5).batches(2))
    k = 2
    assert len(full) > k + 1
    loaded = []
    original = SpeechDataset.__getitem__
    monkeypatch.setattr(SpeechDataset, "__getitem__",
                        lambda self, item: loaded.append(item) or original(self, item))
    resumed = list(build_data(rows, SyllableTokenizer(), AUGMENTED, seed=5).batches(2, start=k))
    same_batches(resumed, full[k:])  # bitwise, dither and augmentation on
    first_k = {key for b in full[:k] for key in b.keys}
    assert len(loaded) == sum(len(b.keys) for b in full[k:])
    assert not first_k & {rows[i].key for _, i in loaded}


def test_workers_do_not_change_the_data(rows):
    """2 workers, persistent across epochs, give the batches of the main process."""
    single = build_data(rows, SyllableTokenizer(), AUGMENTED, seed=6)
    workers = build_data(rows, SyllableTokenizer(), {**AUGMENTED, "num_workers": 2}, seed=6)
    for epoch in (0, 1):
        same_batches(list(workers.batches(epoch)), list(single.batches(epoch)))
    same_batches(list(workers.batches(1, start=3)), list(single.batches(1))[3:])


def test_no_deadlock_with_workers(tmp_path, rows):
    """Speed perturbation and the telephone channel in 2 workers after the parent has used
    torch's thread pool (the fork-after-OpenMP case), in a fresh process with a timeout."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from chunkformer.data.loader import build_data
        from chunkformer.data.manifest import Utterance
        from pipeline_helpers import SyllableTokenizer
        torch.set_num_threads(2)
        torch.randn(512, 512) @ torch.randn(512, 512)  # warm the thread pool before forking
        rows = [Utterance(*r) for r in {[(r.key, r.audio, r.text, r.start, r.end, r.duration)
                                         for r in rows]!r}]
        conf = dict({AUGMENTED!r}, num_workers=2)
        data = build_data(rows, SyllableTokenizer(), conf, seed=0)
        n = sum(len(b.keys) for epoch in range(3) for b in data.batches(epoch))
        print("items", n)
    """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"items {3 * len(rows)}" in result.stdout


@pytest.mark.parametrize("world", [2, 3])
def test_every_rank_same_number_of_batches(rows, world):
    uneven = rows[:7]  # does not divide among the ranks
    for train in (True, False):
        ranks = [build_data(uneven, SyllableTokenizer(), {"max_frames_in_batch": 400,
                                                          "num_workers": 0},
                            seed=0, rank=r, world_size=world, train=train)
                 for r in range(world)]
        for epoch in (0, 1):
            counts = {d.num_batches(epoch) for d in ranks}
            assert len(counts) == 1 and counts.pop() >= 1
        if not train:  # evaluation: every utterance once, ranks padded with empty batches
            keys = [k for d in ranks for b in d.batches(0) for k in b.keys]
            assert sorted(keys) == sorted(r.key for r in uneven)


def test_evaluation_reads_as_inference(rows):
    data = build_data(rows, SyllableTokenizer(), AUGMENTED, seed=0, train=False)
    plain = SpeechDataset(rows, ExampleBuilder(SyllableTokenizer()))
    by_key = {r.key: i for i, r in enumerate(rows)}
    for batch in data.batches(0):
        for key, feats, n in zip(batch.keys, batch.feats, batch.feats_lens):
            assert torch.equal(feats[:n], plain[0, by_key[key]]["feats"])


def test_duration_limits(rows, caplog):
    data = build_data(rows, SyllableTokenizer(), {"min_duration": 1.0, "max_duration": 2.0,
                                                  "num_workers": 0}, seed=0)
    kept = [r for r in rows if 1.0 <= r.duration <= 2.0]
    assert data.left_out == len(rows) - len(kept) > 0 and "left out" in caplog.text
    assert sorted(k for b in data.batches(0) for k in b.keys) == sorted(r.key for r in kept)


@pytest.mark.parametrize("conf, message", [({"max_frame": 10}, "not a known key"),
                                           ({"fbank": {"dithering": 1}}, "data.fbank"),
                                           ({"noise": {"prob": 1}}, "list"),
                                           ({"spec_augment": {"width": 3}}, "spec_augment")])
def test_bad_conf(rows, conf, message):
    with pytest.raises(ValueError, match=message):
        build_data(rows, SyllableTokenizer(), conf, seed=0)
