"""train CLI end to end: kill -9 and resume == uninterrupted; 2-process gloo torchrun ==
1 process with 2 accumulation steps; averaging writes a loadable model folder."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import soundfile as sf
import torch
import yaml

from chunkformer.data.text import normalize_text
from chunkformer.model import ChunkFormerModel


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, vi_speech):
    """A tiny corpus (the espeak sentences, several copies), a syllable vocabulary and a
    tiny-model experiment YAML."""
    root = tmp_path_factory.mktemp("exp_data")
    rows, words = [], set()
    for copy in range(4):
        for n, (path, text) in enumerate(vi_speech):
            rows.append({"key": f"c{copy}-u{n}", "wav": str(path), "txt": text,
                         "duration": sf.info(path).duration})
            words.update(normalize_text(text).split())
    (root / "data.list").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                            for r in rows))
    units = ["<blank>", "<unk>"] + sorted(f"▁{w}" for w in words) + ["<sos/eos>"]
    (root / "vocab.txt").write_text("".join(f"{u} {i}\n" for i, u in enumerate(units)))
    cfg = {
        "model": {"encoder": "chunkformer", "input_dim": 80, "decoder": "transformer",
                  "encoder_conf": {"output_size": 32, "attention_heads": 2, "linear_units": 64,
                                   "num_blocks": 2, "cnn_module_kernel": 15,
                                   "dropout_rate": 0.0, "positional_dropout_rate": 0.0,
                                   "attention_dropout_rate": 0.0},
                  "decoder_conf": {"attention_heads": 2, "linear_units": 64, "num_blocks": 1,
                                   "dropout_rate": 0.0, "positional_dropout_rate": 0.0},
                  "model_conf": {"ctc_weight": 0.3, "lsm_weight": 0.1}},
        "tokenizer": {"path": str(root / "vocab.txt")},
        "data": {"train": str(root / "data.list"), "dev": str(root / "data.list"),
                 "max_frames_in_batch": 700, "num_workers": 0, "speed_perturb": None,
                 "spec_augment": None, "fbank": {"dither": 0.0}},
        "optim": {"lr": 0.002, "warmup_steps": 2},
        "train": {"max_steps": 8, "seed": 3, "chunk_sizes": [-1, 8], "left_context_sizes": [8],
                  "right_context_sizes": [2], "log_every": 1, "val_every": 4, "save_every": 2,
                  "keep_last": 10},
    }
    (root / "exp.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return root


def _train(root, exp, *extra, torchrun=False, wait=True):
    cmd = [sys.executable, "-m", "chunkformer.bin.train", "--config", str(root / "exp.yaml"),
           "--exp_dir", str(exp), *extra]
    if torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
               "--master_port=29517", "-m", *cmd[2:]]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def _weights(exp):
    path = exp / "checkpoints" / (exp / "checkpoints" / "latest").read_text().strip()
    return torch.load(path, weights_only=True)["model"]


def _train_losses(exp):
    by_step = {}
    for line in open(exp / "train_log.jsonl"):
        row = json.loads(line)
        if row["split"] == "train":
            by_step[row["step"]] = row["loss"]  # a resumed run rewrites the steps it redid
    return by_step


def test_kill9_then_resume_equals_uninterrupted(experiment, tmp_path):
    _train(experiment, tmp_path / "full")
    proc = _train(experiment, tmp_path / "crash", wait=False)
    ckpt = tmp_path / "crash" / "checkpoints" / "step_00000004.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    r = subprocess.run([sys.executable, "-m", "chunkformer.bin.train", "--config",
                        str(experiment / "exp.yaml"), "--exp_dir", str(tmp_path / "crash")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "--resume" in r.stderr  # never restarts a run silently
    _train(experiment, tmp_path / "crash", "--resume")
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "crash")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _train_losses(tmp_path / "full") == _train_losses(tmp_path / "crash")


def test_two_process_gloo_equals_accumulation(experiment, tmp_path):
    # one utterance per batch: 16 batches per epoch, so 2 ranks drop none (the sampler drops the
    # batches that do not divide among ranks; one process would use them)
    small = "data.max_frames_in_batch=300"
    _train(experiment, tmp_path / "one", "--override", "train.accum_steps=2", small)
    _train(experiment, tmp_path / "two", "--override", small, torchrun=True)
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    la, lb = _train_losses(tmp_path / "one"), _train_losses(tmp_path / "two")
    assert la.keys() == lb.keys()
    assert all(abs(la[k] - lb[k]) < 1e-4 for k in la)


def test_average_and_fine_tune_from_folder(experiment, tmp_path):
    _train(experiment, tmp_path / "base")
    out = tmp_path / "base" / "final"
    r = subprocess.run([sys.executable, "-m", "chunkformer.bin.average_model", "--exp_dir",
                        str(tmp_path / "base"), "--num", "2", "--mode", "last", "--out",
                        str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    model = ChunkFormerModel.from_pretrained(out)
    ckpts = sorted((tmp_path / "base" / "checkpoints").glob("step_*.pt"))[-2:]
    states = [torch.load(p, weights_only=True)["model"] for p in ckpts]
    k = "encoder.encoders.0.self_attn.linear_q.weight"
    assert torch.allclose(model.state_dict()[k], (states[0][k] + states[1][k]) / 2, atol=1e-6)
    # dev CER in training == recognize on the same weights (one decode function)
    last = subprocess.run([sys.executable, "-m", "chunkformer.bin.average_model", "--exp_dir",
                           str(tmp_path / "base"), "--num", "1", "--mode", "last", "--out",
                           str(tmp_path / "last")], capture_output=True, text=True)
    assert last.returncode == 0, last.stderr
    rec = subprocess.run([sys.executable, "-m", "chunkformer.bin.recognize", "--model_dir",
                          str(tmp_path / "last"), "--data", str(experiment / "data.list"),
                          "--output_dir", str(tmp_path / "dec"), "--chunk_size", "0"],
                         capture_output=True, text=True)
    assert rec.returncode == 0, rec.stderr
    cer = float(rec.stdout.split("CER")[1].split("%")[0])
    dev = [json.loads(x) for x in open(tmp_path / "base" / "train_log.jsonl")]
    dev = [r for r in dev if r["split"] == "dev"][-1]
    assert dev["step"] == 8 and abs(dev["cer"] - cer) < 0.01
    # fine-tuning from the folder starts from exactly its weights (lr 0: nothing moves)
    _train(experiment, tmp_path / "ft", "--override", f"train.init_from={out}",
           "train.max_steps=1", "train.save_every=1", "tokenizer.path=null", "optim.lr=0.0")
    tuned = _weights(tmp_path / "ft")
    loaded = model.state_dict()
    assert set(tuned) == set(loaded) and all(torch.equal(tuned[k], loaded[k]) for k in loaded)


def test_bad_rows_skipped_with_hidden_ids_while_two_ranks_train_on(experiment, tmp_path):
    """Every kind of bad row is left out with its reason, from both ranks, into one
    skipped.tsv whose ids and paths are hashed (train.key_mode=hash); training finishes."""
    from chunkformer.data.manifest import display_key

    good = [json.loads(line) for line in open(experiment / "data.list")]
    speech = good[0]["wav"]
    wave, rate = sf.read(speech, dtype="int16")
    short, corrupt = tmp_path / "call_0912000005.wav", tmp_path / "call_0912000002.wav"
    sf.write(short, wave[: int(0.2 * rate)], rate)
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(range(200)))
    text = good[0]["txt"]
    bad = {  # key → (audio, transcript, the reason's kind)
        "call_0912000001": (tmp_path / "call_0912000001.wav", text, "unreadable audio"),
        "call_0912000002": (corrupt, text, "unreadable audio"),
        "call_0912000003": (speech, " ", "empty transcript"),
        "call_0912000004": (speech, text + " жж", "unknown characters"),
        "call_0912000005": (short, text + " " + text, "transcript too long"),
    }
    rows = good + [{"key": k, "wav": str(a), "txt": t, "duration": 1.0}
                   for k, (a, t, _) in bad.items()]
    (tmp_path / "train.list").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                 for r in rows))
    r = _train(experiment, tmp_path / "exp", "--override", f"data.train={tmp_path}/train.list",
               "train.key_mode=hash", "train.max_steps=12", torchrun=True)
    table = [line.rstrip("\n").split("\t") for line in open(tmp_path / "exp" / "skipped.tsv")]
    kinds = {key: reason.split(":")[0] for _, key, _, reason in table}
    assert kinds == {display_key(k, "hash"): kind for k, (_, _, kind) in bad.items()}
    audios = {display_key(str(a), "hash") for a, _, _ in bad.values()}
    assert {audio for _, _, audio, _ in table} <= audios
    written = (tmp_path / "exp" / "skipped.tsv").read_text() + (
        tmp_path / "exp" / "train_log.jsonl").read_text() + r.stdout + r.stderr
    assert not [k for k in bad if k.split("_")[1] in written]  # no phone number leaks
    assert (tmp_path / "exp" / "checkpoints" / "step_00000012.pt").exists()
