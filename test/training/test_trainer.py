"""Trainer: exact resume, freezing, NaN guard, schedule, loss normalisation."""
import json
from dataclasses import dataclass, field
from typing import List

import pytest
import torch

from chunkformer.encoder.cmvn import GlobalCMVN
from chunkformer.encoder.subsampling import subsampled_length
from chunkformer.model import ChunkFormerModel
from chunkformer.pretrained import build_modules
from chunkformer.training.distributed import DistEnv
from chunkformer.training.optim import build_scheduler, freeze, lr_factor
from chunkformer.training.trainer import NonFiniteLoss, Trainer

CFG = {"output_dim": 30, "input_dim": 80, "decoder": "transformer",
       "encoder_conf": {"output_size": 32, "attention_heads": 2, "linear_units": 64,
                        "num_blocks": 2, "cnn_module_kernel": 15, "dropout_rate": 0.1},
       "decoder_conf": {"attention_heads": 2, "linear_units": 64, "num_blocks": 1},
       "model_conf": {"ctc_weight": 0.3, "lsm_weight": 0.1}}


def tiny_model(seed=0):
    torch.manual_seed(seed)
    cmvn = GlobalCMVN(torch.zeros(80), torch.ones(80))
    encoder, ctc, decoder, _ = build_modules(CFG, True, cmvn)
    return ChunkFormerModel(encoder, ctc, decoder, None, CFG)


@dataclass
class FakeBatch:
    feats: torch.Tensor
    feats_lens: torch.Tensor
    targets: torch.Tensor
    target_lens: torch.Tensor
    audio_seconds: float = 1.0
    skipped: List = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.feats.size(0)

    def to(self, device):
        return self


class FakeData:
    """Deterministic batches of mixed lengths; ``batches`` honours ``start``."""

    def __init__(self, n=6, seed=0, poison=()):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(n):
            lens = torch.tensor([200 + 37 * i, 60, 120])
            feats = torch.randn(3, int(lens.max()), 80, generator=g)
            targets = torch.randint(1, 29, (3, 5), generator=g)
            if i in poison:
                feats[0, 0, 0] = float("nan")
            self.items.append(FakeBatch(feats, lens, targets, torch.tensor([5, 3, 4])))

    def batches(self, epoch, start=0):
        yield from self.items[start:]


def make_trainer(tmp_path, data=None, **kw):
    conf = dict(max_steps=8, seed=1, chunk_sizes=[-1, 8, 16], left_context_sizes=[8, 16],
                right_context_sizes=[0, 4], log_every=1, val_every=100, save_every=3,
                optim={"lr": 1e-3, "warmup_steps": 2})
    conf.update(kw)
    return Trainer(tiny_model(), None, data or FakeData(), None, tmp_path, DistEnv(), **conf)


def _log(path):
    return [json.loads(x) for x in open(path / "train_log.jsonl")]


def test_resume_is_exact(tmp_path):
    full = make_trainer(tmp_path / "full")
    full.fit()
    # the same run, stopped after step 3's checkpoint and resumed in a new trainer
    part = make_trainer(tmp_path / "part", max_steps=8)
    for _ in range(3):  # consume 3 steps then "crash"
        batch = next(part.train_data.batches(0, start=part.position))
        part.position += 1
        part.train_step([batch])
    part.save(None)
    resumed = make_trainer(tmp_path / "part")
    assert resumed.resume()
    assert (resumed.step, resumed.position) == (3, 3)
    resumed.fit()
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    tail = [r["loss"] for r in _log(tmp_path / "full") if r["step"] > 3]
    assert tail == [r["loss"] for r in _log(tmp_path / "part") if r["step"] > 3]


def test_resume_on_an_accelerator_reads_the_checkpoint_on_the_cpu(tmp_path):
    """On a GPU run ``env.device`` is cuda; the checkpoint's RNG states must still be read on
    the CPU (``torch.set_rng_state`` takes CPU bytes). The meta device stands in for cuda:
    anything loaded onto it instead of the CPU fails the resume."""
    tr = make_trainer(tmp_path, max_steps=2, save_every=2)
    tr.fit()
    again = make_trainer(tmp_path, max_steps=2)
    again.env = DistEnv(device=torch.device("meta"))
    assert again.resume() and again.step == 2


def test_ranks_draw_different_random_numbers(tmp_path):
    """Dropout masks (the global torch RNG) differ by rank, reproducibly from (seed, rank)."""
    draws = {}
    for rank in (0, 1, 0):
        make_trainer(tmp_path / f"r{rank}", max_steps=1)  # seeds this process as rank 0
        if rank:
            Trainer(tiny_model(), None, FakeData(), None, tmp_path / "r1b",
                    DistEnv(rank=rank), max_steps=1, seed=1)
        draws.setdefault(rank, []).append(torch.rand(4))
    assert torch.equal(draws[0][0], draws[0][1]) and not torch.equal(draws[0][0], draws[1][0])


class CrashAt(FakeData):
    """FakeData whose batch ``crash`` raises once (a process dying mid-run)."""

    def __init__(self, crash):
        super().__init__()
        self.crash = crash

    def batches(self, epoch, start=0):
        for i, batch in enumerate(self.items[start:], start):
            if i == self.crash:
                self.crash = None
                raise KeyboardInterrupt("crash")
            yield batch


def test_logs_keep_each_step_once_after_a_resume(tmp_path):
    """Steps 4 and 5 were logged after the step-3 checkpoint, then the run died: the resumed
    run redoes them, and the log and tensorboard show each step once, with the redone values."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    make_trainer(tmp_path / "full").fit()
    with pytest.raises(KeyboardInterrupt):
        make_trainer(tmp_path / "part", data=CrashAt(5)).fit()
    assert [r["step"] for r in _log(tmp_path / "part")] == [1, 2, 3, 4, 5]
    resumed = make_trainer(tmp_path / "part")
    assert resumed.resume() and resumed.step == 3
    resumed.fit()
    rows = [(r["step"], r["loss"]) for r in _log(tmp_path / "part")]
    assert rows == [(r["step"], r["loss"]) for r in _log(tmp_path / "full")]
    acc = EventAccumulator(str(tmp_path / "part" / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == list(range(1, 9))


def test_freezing_really_freezes(tmp_path):
    tr = make_trainer(tmp_path, max_steps=2)
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    names = freeze(tr.model, ["encoder.embed", "encoder.encoders.0."])
    tr = Trainer(tr.model, None, FakeData(), None, tmp_path / "b", DistEnv(), max_steps=2,
                 optim={"lr": 1e-2})
    tr.fit()
    after = tr.model.state_dict()
    assert names and all(torch.equal(before[k], after[k]) for k in names)
    changed = [k for k in after if k.startswith("encoder.encoders.1.") and k.endswith("weight")]
    assert all(not torch.equal(before[k], after[k]) for k in changed)
    with pytest.raises(ValueError, match="matches no parameter"):
        freeze(tr.model, ["encoder.nope"])


def test_nan_guard_skips_counts_and_stops(tmp_path):
    tr = make_trainer(tmp_path, data=FakeData(poison={1}), max_steps=4)
    tr.fit()
    log = _log(tmp_path)
    assert [r["skipped_steps"] for r in log if r["split"] == "train"] == [0, 1, 0, 0]
    # memory is logged with every train row (allocator growth shows in tensorboard)
    assert all(100 < r["rss_mib"] < 100_000 for r in log if r["split"] == "train")
    assert all(torch.isfinite(v).all() for v in tr.model.state_dict().values()
               if v.is_floating_point())
    tr2 = make_trainer(tmp_path / "stop", data=FakeData(poison={0, 1, 2, 3}), nan_limit=3)
    with pytest.raises(NonFiniteLoss, match="3 non-finite"):
        tr2.fit()
    assert tr2.ckpt.latest() is not None


def test_warmup_then_cosine_never_rises():
    lrs = [lr_factor(s, 100, 1000) for s in range(1200)]
    peak = lrs.index(max(lrs))
    assert peak == 99 and lrs[0] < lrs[50] < lrs[99]
    assert all(b <= a for a, b in zip(lrs[peak:], lrs[peak + 1:]))
    assert lrs[-1] == pytest.approx(0.0)


def test_held_groups_wait_then_warm_up_again_under_the_cosine():
    model = torch.nn.ModuleDict({"enc": torch.nn.Linear(2, 2), "head": torch.nn.Linear(2, 2)})
    opt = torch.optim.SGD([{"params": model["enc"].parameters(), "held": True},
                           {"params": model["head"].parameters()}], lr=1.0)
    sched = build_scheduler(opt, warmup_steps=10, max_steps=100, hold_steps=30)
    lrs = []
    for _ in range(100):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    held, free = zip(*lrs)
    assert free == tuple(lr_factor(s, 10, 100) for s in range(100))
    assert all(h == 0.0 for h in held[:30]) and 0 < held[30] < held[35] < held[39]
    assert held[30] == pytest.approx(free[30] / 10) and held[39:] == free[39:]


@torch.no_grad()
@pytest.mark.parametrize("ctx", [(0, 0, 0), (8, 16, 4)])
def test_batch_loss_is_mean_of_single_losses(ctx):
    model = tiny_model().eval()
    b = FakeData(1).items[0]
    batch = model(b.feats, b.feats_lens, b.targets, b.target_lens, *ctx)
    singles = [model(b.feats[i:i + 1, :b.feats_lens[i]], b.feats_lens[i:i + 1],
                     b.targets[i:i + 1], b.target_lens[i:i + 1], *ctx)["loss"]
               for i in range(3)]
    assert abs(float(batch["loss"]) - float(torch.stack(singles).mean())) <= 1e-4
    padded = torch.cat([b.feats, torch.randn(3, 50, 80)], 1)
    again = model(padded, b.feats_lens, b.targets, b.target_lens, *ctx)
    assert abs(float(again["loss"]) - float(batch["loss"])) <= 1e-5
    enc, enc_lens = model.encode(b.feats, b.feats_lens, *ctx)
    enc_padded, padded_lens = model.encode(padded, b.feats_lens, *ctx)
    assert enc_lens.tolist() == padded_lens.tolist() == [
        int(subsampled_length(t)) for t in b.feats_lens.tolist()]  # (T - 7) // 8
    for i, n in enumerate(enc_lens.tolist()):
        torch.testing.assert_close(enc_padded[i, :n], enc[i, :n], atol=1e-5, rtol=0)
    double = model(torch.cat([b.feats, b.feats]), torch.cat([b.feats_lens, b.feats_lens]),
                   torch.cat([b.targets, b.targets]), torch.cat([b.target_lens] * 2), *ctx)
    assert abs(float(double["loss"]) - float(batch["loss"])) <= 1e-5


def test_a_step_is_one_masked_batch_without_anomaly_detection(tmp_path):
    """The encoder runs once per micro-batch whatever its size (no per-utterance Python loop),
    with autograd anomaly detection off (it made the user's steps 11 s on a GPU)."""
    trainer = make_trainer(tmp_path)
    seen = []
    for layer in (trainer.model.encoder.embed, trainer.model.encoder.encoders[0]):
        layer.register_forward_hook(lambda m, i, o: seen.append(torch.is_anomaly_enabled()))
    b = FakeData(1).items[0]
    for n in (1, 3):
        seen.clear()
        trainer.train_step([FakeBatch(b.feats[:n], b.feats_lens[:n], b.targets[:n],
                                      b.target_lens[:n])])
        assert seen == [False, False], (n, seen)


def test_contexts_from_the_released_schema_and_streaming(tmp_path):
    from chunkformer.bin.train import training_contexts
    from chunkformer.config import ConfigError

    enc = {"dynamic_chunk_sizes": [-1, 8, 16], "dynamic_left_context_sizes": [8],
           "dynamic_right_context_sizes": [4, 8, 16], "streaming": True}
    train = training_contexts({"model": {"encoder_conf": enc}, "train": {"max_steps": 3}})
    assert train["chunk_sizes"] == [-1, 8, 16] and train["streaming"] is True
    tr = make_trainer(tmp_path, **{k: v for k, v in train.items() if k != "max_steps"})
    drawn = set()
    for tr.step in range(200):
        drawn.add(tr.context())
    assert all(r < c for c, _, r in drawn if c > 0) and (0, 0, 0) in drawn
    assert {c for c, _, _ in drawn} == {0, 8, 16}
    with pytest.raises(ConfigError, match="disagree"):
        training_contexts({"model": {"encoder_conf": enc}, "train": {"chunk_sizes": [-1]}})
    warm = make_trainer(tmp_path / "warm", chunk_sizes=[8], left_context_sizes=[8],
                        right_context_sizes=[2], full_context_steps=50)
    for warm.step in range(60):
        assert warm.context() == ((0, 0, 0) if warm.step < 50 else (8, 8, 2))


def test_mostly_skipped_data_stops_and_zero_throughput_warns(tmp_path, caplog):
    from chunkformer.data.dataset import Skipped
    from chunkformer.training.trainer import DataError

    data = FakeData()
    for i, b in enumerate(data.items):  # 4 of every 7 items skipped: over half
        b.skipped = [Skipped(f"u{i}-{j}", "too short: 9 frames") for j in range(4)]
    with pytest.raises(DataError, match=r"24 of 42 items of epoch 0 .*: too short 24\."):
        make_trainer(tmp_path / "a", data=data, max_steps=20, max_skipped_fraction=0.5).fit()
    # a share below the limit trains on (6 epochs of 6 batches)
    make_trainer(tmp_path / "b", data=data, max_steps=20, max_skipped_fraction=0.6).fit()
    empty = FakeData()
    for b in empty.items:
        b.audio_seconds = 0.0
    with caplog.at_level("WARNING"):
        make_trainer(tmp_path / "c", data=empty, max_steps=2).fit()
    assert "no audio trained on since the last log" in caplog.text
