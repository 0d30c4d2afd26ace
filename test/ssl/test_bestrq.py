"""BEST-RQ: masking statistics, targets, the loss falling on a tiny run, exact resume, and an SSL
model's encoder taken over by an ASR model (exactly the encoder keys, frozen for N steps)."""
import json
import os
import subprocess
import sys

import pytest
import soundfile as sf
import torch
import yaml

from chunkformer.data.features import compute_fbank
from chunkformer.data.audio import load_audio
from chunkformer.encoder.subsampling import subsampled_length
from chunkformer.data.text import normalize_text
from chunkformer.ssl.bestrq import BestRQModel, code_perplexity
from chunkformer.ssl.masking import (RECEPTIVE_FIELD, encoder_start_prob,
                                     expected_masked_fraction, mask_features, sample_span_mask,
                                     span_frames)
from chunkformer.ssl.quantizer import RandomProjectionQuantizer

ENCODER = {"output_size": 32, "attention_heads": 2, "linear_units": 64, "num_blocks": 2,
           "cnn_module_kernel": 15, "dropout_rate": 0.0, "positional_dropout_rate": 0.0,
           "attention_dropout_rate": 0.0}
SSL = {"num_codebooks": 2, "codebook_size": 64, "codebook_dim": 8, "mask_prob": 0.02,
       "mask_span_ms": 240}


def test_mask_statistics_follow_the_configuration():
    start, span = encoder_start_prob(0.01), span_frames(400)
    assert span == 5 and start == pytest.approx(1 - 0.99 ** 8)
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(50, 120, (4000,), generator=g)
    mask = sample_span_mask(lengths, start, span, g)
    valid = torch.arange(mask.size(1)) < lengths[:, None]
    assert not (mask & ~valid).any()
    interior = mask[:, span - 1:50]  # every utterance is at least 50 frames long
    assert interior.float().mean() == pytest.approx(expected_masked_fraction(start, span),
                                                    abs=0.01)
    assert expected_masked_fraction(start, span) == pytest.approx(1 - 0.99 ** 40)
    assert mask[:, 0].float().mean() == pytest.approx(start, abs=0.015)  # no span before 0
    # spans: every masked run is at least `span` long unless cut by the utterance's end
    row = mask[0, :lengths[0]].int().tolist()
    runs = "".join(map(str, row)).replace("0", " ").split()
    assert all(len(r) >= span for r in runs[:-1])
    # an utterance too short to draw a start still gets one span
    few = sample_span_mask(torch.tensor([3] * 200), 0.0, 2, g)
    assert (few.sum(dim=1) >= 1).all()


def test_masked_features_hide_whole_receptive_fields():
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(2, 170, 80, generator=g) * 3 + 5
    lens = torch.tensor([170, 95])
    frames = subsampled_length(lens)
    mask = torch.zeros(2, int(frames.max()), dtype=torch.bool)
    mask[0, 4], mask[1, 9] = True, True
    out = mask_features(feats, lens, mask, noise_std=0.1, generator=g)
    changed = (out != feats).any(dim=2)
    assert changed[0].nonzero().squeeze(1).tolist() == list(range(32, 32 + RECEPTIVE_FIELD))
    assert changed[1].nonzero().squeeze(1).tolist() == list(range(72, 72 + RECEPTIVE_FIELD))
    # the noise sits at the utterance's mean with a tenth of its spread
    hidden = out[0, 32:47]
    mean, std = feats[0].mean(dim=0), feats[0].std(dim=0, unbiased=False)
    assert ((hidden - mean).abs() < 0.6 * std).float().mean() > 0.99


def test_targets_deterministic_and_independent_of_the_batch():
    g = torch.Generator().manual_seed(2)
    utts = [torch.randn(n, 80, generator=g) * 4 - 3 for n in (300, 95, 180)]
    q = RandomProjectionQuantizer(80, 2, 64, 8, seed=7)
    alone = q(utts[1][None], torch.tensor([95]))[0]
    padded = torch.nn.utils.rnn.pad_sequence(utts, batch_first=True)
    batched = q(padded, torch.tensor([300, 95, 180]))
    frames = int(subsampled_length(95))
    assert alone.shape == (frames, 2) and torch.equal(batched[1, :frames], alone)
    assert (batched[1, frames:] == -1).all()
    again = RandomProjectionQuantizer(80, 2, 64, 8, seed=7)(padded, torch.tensor([300, 95, 180]))
    other = RandomProjectionQuantizer(80, 2, 64, 8, seed=8)(padded, torch.tensor([300, 95, 180]))
    assert torch.equal(again, batched) and not torch.equal(other, batched)
    # targets use the codebooks: many entries, and perplexity counts them
    assert code_perplexity(batched, 64) > 10
    assert float(code_perplexity(torch.zeros(1, 20, 1, dtype=torch.long), 64)) == 1.0


def test_mean_pooled_targets_quantize_the_average_of_the_eight_frames():
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(200, 80, generator=g)
    q = RandomProjectionQuantizer(80, 3, 32, 8, seed=1, pooling="mean")
    assert q.projection.shape == (3, 80, 8)
    frames = int(subsampled_length(200))
    normed = (feats - feats.mean(0)) / feats.std(0, unbiased=False)
    means = normed[3:3 + 8 * frames].reshape(frames, 8, 80).mean(1)
    z = torch.nn.functional.normalize(torch.einsum("td,kde->kte", means, q.projection), dim=-1)
    expect = torch.einsum("kte,kve->ktv", z, q.codebooks).argmax(-1).t()
    assert torch.equal(q.quantize(feats), expect)
    with pytest.raises(ValueError, match="stack or mean"):
        RandomProjectionQuantizer(80, 1, 8, 4, pooling="max")


def test_targets_follow_the_speech_not_the_level(vi_speech):
    """Per-utterance normalisation: a louder copy of an utterance has the same targets."""
    wave = load_audio(vi_speech[1][0])
    q = RandomProjectionQuantizer(80, 1, 256, 16, seed=0)
    a = q.quantize(compute_fbank(wave))
    b = q.quantize(compute_fbank(wave * 4))
    assert (a == b).float().mean() > 0.9


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, vi_speech):
    """Audio-only and transcribed lists of the espeak sentences, a word vocabulary and
    SSL / ASR experiment YAMLs for a tiny encoder."""
    root = tmp_path_factory.mktemp("ssl")
    rows = [{"key": f"c{c}-u{n}", "wav": str(p), "txt": t, "duration": sf.info(p).duration}
            for c in range(3) for n, (p, t) in enumerate(vi_speech)]
    with open(root / "audio.list", "w") as f:  # no transcripts at all
        f.writelines(json.dumps({k: r[k] for k in ("key", "wav", "duration")}) + "\n"
                     for r in rows)
    with open(root / "text.list", "w") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    # word units: characters would outrun this tiny encoder's 12.5 frames/s on most of these
    # fast utterances (transcript too long: skipped)
    words = sorted({f"▁{w}" for _, t in vi_speech for w in normalize_text(t).split()})
    units = ["<blank>", "<unk>"] + words + ["<sos/eos>"]
    (root / "vocab.txt").write_text("".join(f"{u} {i}\n" for i, u in enumerate(units)))
    data = {"max_frames_in_batch": 1200, "num_workers": 0, "speed_perturb": None,
            "spec_augment": None, "fbank": {"dither": 0.0}}
    train = {"seed": 5, "chunk_sizes": [-1, 8], "left_context_sizes": [8],
             "right_context_sizes": [2], "log_every": 1, "val_every": 10, "save_every": 5}
    ssl = {"model": {"model": "bestrq", "encoder": "chunkformer", "input_dim": 80,
                     "encoder_conf": ENCODER, "ssl_conf": SSL},
           "data": {**data, "train": str(root / "audio.list"), "dev": str(root / "audio.list")},
           "optim": {"lr": 0.003, "warmup_steps": 5},
           "train": {**train, "max_steps": 40}}
    asr = {"model": {"encoder": "chunkformer", "input_dim": 80, "encoder_conf": ENCODER,
                     "model_conf": {"ctc_weight": 1.0}},
           "tokenizer": {"path": str(root / "vocab.txt")},
           "data": {**data, "train": str(root / "text.list"), "dev": str(root / "text.list")},
           "optim": {"lr": 0.003, "warmup_steps": 1},
           "train": {**train, "max_steps": 6}}
    for name, cfg in (("ssl", ssl), ("asr", asr)):
        (root / f"{name}.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return root


def _run(*args):
    r = subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def _log(exp, split):
    return [r for r in map(json.loads, open(exp / "train_log.jsonl")) if r["split"] == split]


@pytest.fixture(scope="module")
def pretrained(corpus, tmp_path_factory):
    exp = tmp_path_factory.mktemp("ssl_exp")
    _run("chunkformer.bin.train", "--config", corpus / "ssl.yaml", "--exp_dir", exp)
    _run("chunkformer.bin.average_model", "--exp_dir", exp, "--num", "1", "--mode", "last",
         "--out", exp / "final")
    return exp


def test_pretraining_loss_falls_and_is_logged(pretrained):
    train = _log(pretrained, "train")
    first, last = [sum(r["loss"] for r in rows) / 5 for rows in (train[:5], train[-5:])]
    assert last < first - 0.5, (first, last)
    assert all(0.1 < r["masked_fraction"] < 0.6 for r in train)
    assert all(1 < r["perplexity"] <= 64 for r in train)
    dev = _log(pretrained, "dev")
    assert [r["step"] for r in dev] == [10, 20, 30, 40]
    assert dev[-1]["accuracy"] > dev[0]["accuracy"] and "cer" not in dev[-1]
    tags = os.listdir(pretrained / "tensorboard")
    assert tags  # scalars written (accuracy, perplexity among them, see the log rows)
    model = BestRQModel.from_pretrained(pretrained / "final")
    assert model.quantizer.codebooks.shape == (2, 64, 8)


def test_pretraining_resumes_exactly(corpus, pretrained, tmp_path):
    """Stop after step 20's checkpoint, resume: the same weights and losses as straight on."""
    exp = tmp_path / "part"
    _run("chunkformer.bin.train", "--config", corpus / "ssl.yaml", "--exp_dir", exp,
         "--override", "train.max_steps=40", "train.save_every=20", "train.keep_last=5")
    ckpts = exp / "checkpoints"
    (ckpts / "step_00000040.pt").unlink()
    (ckpts / "latest").write_text("step_00000020.pt")
    _run("chunkformer.bin.train", "--config", corpus / "ssl.yaml", "--exp_dir", exp,
         "--resume", "--override", "train.max_steps=40", "train.save_every=20")
    a = torch.load(ckpts / "step_00000040.pt", weights_only=True)["model"]
    b_path = sorted((pretrained / "checkpoints").glob("step_00000040.pt"))[0]
    b = torch.load(b_path, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["step"] for r in _log(exp, "train")] == list(range(1, 41))  # each step once
    resumed = {r["step"]: r["loss"] for r in _log(exp, "train")}
    straight = {r["step"]: r["loss"] for r in _log(pretrained, "train")}
    assert resumed == straight


def test_asr_takes_over_exactly_the_encoder_and_holds_it(corpus, pretrained, tmp_path):
    exp = tmp_path / "ft"
    r = _run("chunkformer.bin.train", "--config", corpus / "asr.yaml", "--exp_dir", exp,
             "--override", f"train.init_encoder_from={pretrained / 'final'}",
             "train.freeze=[encoder.]", "train.freeze_steps=3", "train.save_every=1")
    assert "encoder: all" in r.stderr and "left behind" in r.stderr
    assert "heads.*" in r.stderr and "quantizer.*" in r.stderr and "ctc.*" in r.stderr
    ssl = BestRQModel.from_pretrained(pretrained / "final").state_dict()
    encoder = {k for k in ssl if k.startswith("encoder.")}
    ckpt = exp / "checkpoints"
    step = [torch.load(ckpt / f"step_{s:08d}.pt", weights_only=True)["model"] for s in (3, 4)]
    assert {k for k in step[0] if k.startswith("encoder.")} == encoder
    # the first 3 steps leave the encoder exactly as pretrained while the CTC head trains
    assert all(torch.equal(step[0][k], ssl[k]) for k in encoder)
    assert not torch.equal(step[0]["ctc.ctc_lo.weight"], step[1]["ctc.ctc_lo.weight"])
    moved = [k for k in encoder if "weight" in k and not torch.equal(step[1][k], ssl[k])]
    assert len(moved) > 10  # then it trains
    # a mismatched encoder is refused with the keys named
    bad = tmp_path / "bad.yaml"
    cfg = yaml.safe_load(open(corpus / "asr.yaml"))
    cfg["model"]["encoder_conf"]["num_blocks"] = 3
    bad.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    r = subprocess.run([sys.executable, "-m", "chunkformer.bin.train", "--config", str(bad),
                        "--exp_dir", str(tmp_path / "bad"), "--override",
                        f"train.init_encoder_from={pretrained / 'final'}"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "encoder.encoders.2." in r.stderr and "missing" in r.stderr
