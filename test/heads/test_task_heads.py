"""Task heads on the shared encoder: pooling that ignores padding, the classifier and speaker
heads, layer weights, adapters (counts, identity at start, save / load of the small file) and a
multi-task training run on a frozen encoder through the train CLI."""
import json
import os
import subprocess
import sys

import pytest
import soundfile as sf
import torch
import yaml

from chunkformer.encoder.encoder import ChunkFormerEncoder
from chunkformer.heads.adapters import load_trainable, save_trainable
from chunkformer.heads.classifier import SpeakerEmbeddingHead, cosine_score
from chunkformer.heads.multitask import (ADAPTER_FILE, EncoderWithHeads, build_heads_model,
                                         collect_classes, load_heads_folder)
from chunkformer.heads.pooling import AttentiveStatsPooling, MaskedMeanPooling

D = 32
ENCODER = {"output_size": D, "attention_heads": 2, "linear_units": 64, "num_blocks": 3,
           "cnn_module_kernel": 15, "dropout_rate": 0.0, "positional_dropout_rate": 0.0,
           "attention_dropout_rate": 0.0}
HEADS = {"intent": {"type": "classifier", "classes": ["a", "b", "c"], "pooling": "attentive",
                    "input": "weighted"},
         "mood": {"type": "classifier", "classes": ["x", "y"], "pooling": "mean", "input": 1,
                  "hidden_dim": 16},
         "speaker": {"type": "speaker", "classes": ["s1", "s2", "s3"], "embed_dim": 8,
                     "weight": 0.5}}


def model_cfg(**extra):
    return {"model": "multitask", "encoder": "chunkformer", "input_dim": 80,
            "encoder_conf": ENCODER, "heads": HEADS, **extra}


def batch(seed=0, lens=(400, 150, 90)):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lens), max(lens), 80, generator=g)
    for i, n in enumerate(lens):
        x[i, n:] = 0
    return x, torch.tensor(lens)


@pytest.mark.parametrize("pooling", [MaskedMeanPooling, AttentiveStatsPooling])
def test_pooling_ignores_padding(pooling):
    torch.manual_seed(0)
    pool = pooling(D).requires_grad_(False)
    x = torch.randn(3, 20, D)
    lens = torch.tensor([20, 7, 12])
    pooled, weights = pool(x, lens)
    for i, n in enumerate(lens.tolist()):
        alone, w = pool(x[i:i + 1, :n], lens[i:i + 1])
        assert torch.allclose(pooled[i], alone[0], atol=1e-6)
        assert torch.allclose(weights[i, :n], w[0], atol=1e-6)
        assert weights[i, n:].abs().sum() == 0 and weights[i].sum() == pytest.approx(1.0)
    garbage = x.clone()
    garbage[1, 7:] = 1e4  # whatever sits in the padding
    assert torch.allclose(pool(garbage, lens)[0], pooled, atol=1e-5)


def test_heads_batched_equal_one_by_one():
    torch.manual_seed(0)
    model = build_heads_model(model_cfg()).eval()
    x, lens = batch()
    with torch.no_grad():
        out = model.run(x, lens)
        for i, n in enumerate(lens.tolist()):
            alone = model.run(x[i:i + 1, :n], lens[i:i + 1])
            for name in HEADS:
                assert torch.allclose(out[name][0][i], alone[name][0][0], atol=1e-4), name


def test_multitask_loss_weights_and_missing_labels():
    torch.manual_seed(0)
    model = build_heads_model(model_cfg())
    x, lens = batch()
    labels = {"intent": torch.tensor([0, 2, -1]), "mood": torch.tensor([1, 0, 1]),
              "speaker": torch.tensor([-1, -1, -1])}
    out = model(x, lens, None, None, 0, 0, 0, labels=labels)
    assert set(model.stat_names) - {"loss"} <= set(out)
    assert out["loss_speaker"] == 0 and out["acc_speaker"] == 0  # nobody labeled
    expected = out["loss_intent"] + out["loss_mood"]  # weights 1, 1 (speaker 0.5 · 0)
    assert float(out["loss"]) == pytest.approx(float(expected), rel=1e-5)
    out["loss"].backward()
    assert model.layer_weights.logits.grad is not None  # the weighted sum trains
    # the intent loss only counts the two labeled utterances
    logits = model.run(x, lens)["intent"][0]
    ce = torch.nn.functional.cross_entropy(logits[:2], labels["intent"][:2])
    assert float(out["loss_intent"]) == pytest.approx(float(ce), rel=1e-4)


def test_speaker_head_margin_and_cosine():
    torch.manual_seed(0)
    head = SpeakerEmbeddingHead(D, ["a", "b"], embed_dim=8, margin=0.3, scale=10)
    x, lens = torch.randn(4, 10, D), torch.tensor([10, 10, 6, 3])
    cos, _ = head(x, lens)
    labels = torch.tensor([0, 1, 0, -1])
    with_margin = head.loss(cos, labels)
    head.margin = 0.0
    without = head.loss(cos, labels)
    assert (with_margin[:3] > without[:3]).all() and with_margin[3] == 0
    emb, _ = head.embed(x, lens)
    assert cosine_score(emb, emb).allclose(torch.ones(4))
    assert cosine_score(emb, -emb).allclose(-torch.ones(4))


@pytest.mark.parametrize("kind,per_block", [
    ("bottleneck", 2 * D + (D * 8 + 8) + (8 * D + D)),  # LayerNorm, down, up
    ("lora", 4 * 8 * (D + D)),                          # q, k, v, out: A (r, D) + B (D, r)
])
def test_adapters_count_identity_and_small_file(kind, per_block, tmp_path):
    torch.manual_seed(0)
    base = build_heads_model(model_cfg()).eval()
    torch.manual_seed(0)
    adapted = build_heads_model(model_cfg(adapters={"kind": kind, "dim": 8})).eval()
    assert sum(p.numel() for p in adapted.adapters.parameters()) == 3 * per_block
    trainable = {n.split(".")[0] for n, p in adapted.named_parameters() if p.requires_grad}
    assert trainable == {"adapters", "heads", "layer_weights"}  # the encoder is frozen
    x, lens = batch()
    with torch.no_grad():  # identity at the start: the base model's outputs
        assert torch.allclose(adapted.run(x, lens)["enc"], base.run(x, lens)["enc"], atol=1e-6)
        for p in adapted.adapters.parameters():  # as if trained
            p.add_(torch.randn_like(p) * 0.1)
        trained = adapted.run(x, lens)
    assert not torch.allclose(trained["enc"], base.run(x, lens)["enc"], atol=1e-3)
    path = save_trainable(adapted, tmp_path / "adapters.pt")
    full = tmp_path / "full.pt"
    torch.save(adapted.state_dict(), full)
    assert path.stat().st_size < 0.6 * full.stat().st_size
    torch.manual_seed(0)
    fresh = build_heads_model(model_cfg(adapters={"kind": kind, "dim": 8})).eval()
    report = load_trainable(fresh, path)
    assert report["tensors"] == len([p for p in adapted.parameters() if p.requires_grad])
    with torch.no_grad():
        again = fresh.run(x, lens)
    assert torch.allclose(again["enc"], trained["enc"], atol=1e-6)
    assert torch.allclose(again["intent"][0], trained["intent"][0], atol=1e-6)
    with pytest.raises(ValueError, match="do not fit"):
        load_trainable(build_heads_model(model_cfg(adapters={"kind": kind, "dim": 4})), path)


def test_collect_classes_and_bad_config():
    rows = [type("R", (), {"labels": {"intent": v}, "speaker": s, "group": None})()
            for v, s in (("pay", "a"), ("lock", "b"), ("pay", "a"))]
    cfg = collect_classes({"heads": {"intent": {"type": "classifier"},
                                     "who": {"type": "speaker", "field": "speaker"}}}, rows)
    assert cfg["heads"]["intent"]["classes"] == ["lock", "pay"]
    assert cfg["heads"]["who"]["classes"] == ["a", "b"]
    enc = ChunkFormerEncoder(80, D, 2, 64, 3, 15, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="input"):
        EncoderWithHeads(enc, {"x": {"type": "classifier", "classes": ["a", "b"], "input": 7}})
    with pytest.raises(ValueError, match="type"):
        EncoderWithHeads(enc, {"x": {"type": "regressor", "classes": ["a", "b"]}})


def test_balanced_class_weights_undo_the_majority():
    """``class_weights: balanced`` → N / (C · count) per class in config.yaml; each
    utterance's loss is its cross-entropy times its class's weight, so every class weighs the
    same in a pass over the data; a class the list lacks is an error."""
    rows = [type("R", (), {"labels": {"outcome": v}, "speaker": None, "group": None})()
            for v in ["escalate"] * 6 + ["pays"] * 3 + ["other"]]
    cfg = collect_classes({"heads": {"outcome": {"type": "classifier",
                                                 "class_weights": "balanced"}}}, rows)
    head = cfg["heads"]["outcome"]
    assert head["classes"] == ["escalate", "other", "pays"]
    assert head["class_weights"] == pytest.approx([10 / 18, 10 / 3, 10 / 9], abs=1e-6)
    enc = ChunkFormerEncoder(80, D, 2, 64, 3, 15, 0.0, 0.0, 0.0)
    model = EncoderWithHeads(enc, cfg["heads"])
    clf = model.heads["outcome"]
    logits, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, -1])
    plain = torch.nn.functional.cross_entropy(logits, labels.clamp_min(0), reduction="none")
    expect = plain * torch.tensor(head["class_weights"] + [0.0])
    assert torch.allclose(clf.loss(logits, labels), expect)
    assert "heads.outcome.class_weights" not in model.state_dict()  # config, not weights
    with pytest.raises(ValueError, match="no 'refund'"):
        collect_classes({"heads": {"outcome": {"type": "classifier", "classes": [
            "escalate", "refund"], "class_weights": "balanced"}}}, rows)
    with pytest.raises(ValueError, match="2 values for 3 classes"):
        EncoderWithHeads(enc, {"o": {"type": "classifier", "classes": ["a", "b", "c"],
                                     "class_weights": [1.0, 2.0]}})
    with pytest.raises(ValueError, match="'balance' is neither"):  # a typo is not a list
        EncoderWithHeads(enc, {"o": {"type": "classifier", "classes": ["a", "b", "c"],
                                     "class_weights": "balance"}})


def _run(*args):
    r = subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def test_heads_train_on_a_frozen_encoder_from_a_model_folder(vi_speech, tmp_path):
    """Train CLI: intent + speaker heads from the list's fields, the encoder taken from an
    ASR folder and frozen; averaging writes a folder that loads; adapters give a small file."""
    rows = [{"key": f"c{c}-u{n}", "wav": str(p), "txt": t, "duration": sf.info(p).duration,
             "intent": ["greet", "account", "balance", "thanks"][n], "speaker": f"spk{n % 2}"}
            for c in range(3) for n, (p, t) in enumerate(vi_speech)]
    with open(tmp_path / "data.list", "w") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    torch.manual_seed(0)
    base = build_heads_model(model_cfg(heads={}))
    from chunkformer.pretrained import save_folder
    save_folder(base, tmp_path / "base")
    heads = {"intent": {"type": "classifier", "pooling": "attentive", "input": "weighted"},
             "speaker": {"type": "speaker", "embed_dim": 8, "weight": 0.5}}
    cfg = {"model": model_cfg(heads=heads),
           "data": {"train": str(tmp_path / "data.list"), "dev": str(tmp_path / "data.list"),
                    "max_frames_in_batch": 1200, "num_workers": 0, "speed_perturb": None,
                    "spec_augment": None, "fbank": {"dither": 0.0}},
           "optim": {"lr": 0.01, "warmup_steps": 2},
           "train": {"max_steps": 30, "seed": 0, "log_every": 5, "val_every": 15, "grad_clip": 100,
                     "save_every": 15, "init_encoder_from": str(tmp_path / "base"),
                     "freeze": ["encoder."]}}
    (tmp_path / "heads.yaml").write_text(yaml.safe_dump(cfg))
    exp = tmp_path / "exp"
    _run("chunkformer.bin.train", "--config", tmp_path / "heads.yaml", "--exp_dir", exp)
    log = [json.loads(x) for x in open(exp / "train_log.jsonl")]
    dev = [r for r in log if r["split"] == "dev"]
    assert dev[-1]["acc_intent"] >= 0.75 and dev[-1]["loss_intent"] < dev[0]["loss_intent"]
    _run("chunkformer.bin.average_model", "--exp_dir", exp, "--num", "1", "--mode", "last",
         "--out", exp / "final")
    model = load_heads_folder(exp / "final")
    assert model.heads["intent"].classes == ["account", "balance", "greet", "thanks"]
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in base.state_dict().items())  # frozen
    # adapters: the small file, loaded on top of the base folder, gives the same model
    cfg["model"]["adapters"] = {"kind": "lora", "dim": 4}
    cfg["train"].pop("freeze")
    cfg["train"]["max_steps"] = 4
    (tmp_path / "lora.yaml").write_text(yaml.safe_dump(cfg))
    _run("chunkformer.bin.train", "--config", tmp_path / "lora.yaml", "--exp_dir",
         tmp_path / "lora")
    _run("chunkformer.bin.average_model", "--exp_dir", tmp_path / "lora", "--num", "1",
         "--mode", "last", "--out", tmp_path / "lora" / "final")
    full = load_heads_folder(tmp_path / "lora" / "final")
    small = tmp_path / "small"
    small.mkdir()
    small_cfg = yaml.safe_load(open(tmp_path / "lora" / "final" / "config.yaml"))
    small_cfg["base_model"] = str(tmp_path / "base")
    (small / "config.yaml").write_text(yaml.safe_dump(small_cfg, allow_unicode=True))
    (small / ADAPTER_FILE).write_bytes((tmp_path / "lora" / "final" / ADAPTER_FILE).read_bytes())
    (small / "global_cmvn").write_bytes((tmp_path / "base" / "global_cmvn").read_bytes()) \
        if (tmp_path / "base" / "global_cmvn").exists() else None
    rebuilt = load_heads_folder(small)
    x, lens = batch()
    with torch.no_grad():
        a, b = full.run(x, lens), rebuilt.run(x, lens)
    assert torch.allclose(a["intent"][0], b["intent"][0], atol=1e-5)
    assert (small / ADAPTER_FILE).stat().st_size < 0.5 * (
        tmp_path / "lora" / "final" / "pytorch_model.bin").stat().st_size


def test_evaluate_heads_cli_writes_metrics_predictions_and_all_class_scores(vi_speech,
                                                                            tmp_path):
    """Segment rows of one recording are scored like whole files; scores.jsonl carries every
    class's probability (what call_outcome reads), its argmax is predictions.tsv's class."""
    torch.manual_seed(0)
    from chunkformer.pretrained import save_folder
    save_folder(build_heads_model(model_cfg()).eval(), tmp_path / "task")
    wav, _ = vi_speech[0]
    half = sf.info(wav).duration / 2
    rows = [{"key": "whole", "wav": str(wav), "intent": "a", "mood": "x", "speaker": "s1"},
            {"key": "first", "wav": str(wav), "start": 0.0, "end": half, "intent": "b",
             "speaker": "s1"},
            {"key": "second", "wav": str(wav), "start": half, "end": 2 * half, "mood": "y",
             "speaker": "s2"}]
    (tmp_path / "rows.list").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "eval"
    _run("chunkformer.bin.evaluate_heads", "--model_dir", tmp_path / "task", "--data",
         tmp_path / "rows.list", "--output_dir", out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["intent"]["utterances"] == 2 and metrics["mood"]["utterances"] == 2
    assert (out / "confusion_intent.png").stat().st_size > 0
    scores = [json.loads(x) for x in open(out / "scores.jsonl")]
    assert [s["key"] for s in scores] == ["whole", "first", "second"]
    predicted = {}
    for line in (out / "predictions.tsv").read_text().splitlines()[1:]:
        key, head, cls, p = line.split("\t")
        predicted[key, head] = (cls, float(p))
    for s in scores:
        assert set(s) == {"key", "intent", "mood"}  # classifier heads only
        for head, probs in s.items():
            if head == "key":
                continue
            assert sum(probs.values()) == pytest.approx(1, abs=1e-4)
            best = max(probs, key=probs.get)
            assert predicted[s["key"], head] == (best, pytest.approx(probs[best], abs=1e-4))
    assert scores[1]["intent"] != scores[2]["intent"]  # the two halves are scored apart
