"""Collate: padded shapes, padding values, lengths, seconds, skipped rows, empty batches."""
import torch

from chunkformer.data.collate import Batch, collate
from chunkformer.data.dataset import Skipped


def example(key, frames, tokens, seconds):
    return {"key": key, "feats": torch.randn(frames, 80) + 3.0,
            "targets": torch.arange(2, 2 + tokens), "audio_seconds": seconds}


def test_padded_batch():
    items = [example("a", 50, 3, 0.5), Skipped("bad", "empty transcript"),
             example("b", 120, 7, 1.2), example("c", 20, 1, 0.2)]
    batch = collate(items)
    assert isinstance(batch, Batch) and batch.keys == ["a", "b", "c"]
    assert batch.feats.shape == (3, 120, 80) and batch.feats.dtype == torch.float32
    assert batch.feats_lens.tolist() == [50, 120, 20]
    assert batch.targets.shape == (3, 7) and batch.target_lens.tolist() == [3, 7, 1]
    for row, item in enumerate(i for i in items if isinstance(i, dict)):
        t, u = item["feats"].size(0), item["targets"].numel()
        assert torch.equal(batch.feats[row, :t], item["feats"])
        assert (batch.feats[row, t:] == 0).all()
        assert torch.equal(batch.targets[row, :u], item["targets"])
        assert (batch.targets[row, u:] == -1).all()
    assert abs(batch.audio_seconds - 1.9) < 1e-9
    assert batch.skipped == [Skipped("bad", "empty transcript")]
    moved = batch.to("cpu")
    assert torch.equal(moved.feats, batch.feats) and moved.skipped == batch.skipped


def test_all_skipped_gives_an_empty_batch():
    batch = collate([Skipped("x", "too short: 3 fbank frames")], num_mel_bins=40)
    assert batch.feats.shape == (0, 0, 40) and batch.targets.shape == (0, 0)
    assert batch.feats_lens.numel() == 0 and batch.audio_seconds == 0.0
    assert [s.key for s in batch.skipped] == ["x"]
    assert collate([]).feats.shape == (0, 0, 80)
