"""train CLI end to end: kill -9 and resume == uninterrupted; 2-process gloo torchrun ==
1 process with 2 accumulation steps; averaging writes a loadable model folder."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def _train(root, exp, *extra, torchrun=False, wait=True, timeout=300, ok=True):
    """Run the train CLI (2 ranks under torchrun); a run that hangs is killed with its whole
    process group after ``timeout`` s and fails the test."""
    cmd = [sys.executable, "-m", "chunkformer.bin.train", "--config", str(root / "exp.yaml"),
           "--exp_dir", str(exp), *extra]
    if torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
               "--master_port=29517", "-m", *cmd[2:]]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    if not wait:
        return proc
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for pid in _worker_pids(proc.pid).values():  # torchrun's workers: their own sessions
            os.kill(pid, signal.SIGKILL)
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"training hung for {timeout} s:\n{out[-2000:]}{err[-3000:]}")
    r = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    if ok:
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def _weights(exp):
    path = exp / "checkpoints" / (exp / "checkpoints" / "latest").read_text().strip()
    return torch.load(path, weights_only=True)["model"]


def _train_losses(exp):
    """{step: training loss} from train_log.jsonl; every step must appear once (a resumed run
    drops what it redoes)."""
    steps = [json.loads(line) for line in open(exp / "train_log.jsonl")]
    steps = [(row["step"], row["loss"]) for row in steps if row["split"] == "train"]
    assert len({s for s, _ in steps}) == len(steps), f"steps logged twice: {steps}"
    return dict(steps)


def _tensorboard_steps(exp, tag="train/loss"):
    """The steps of one scalar as a tensorboard reader sees them (purges applied)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(exp / "tensorboard"))
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]


def _wait_for(path, proc, seconds=120):
    deadline = time.time() + seconds
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"


def _worker_pids(torchrun_pid):
    """{rank: pid} of torchrun's worker processes."""
    ranks = {}
    for task in os.listdir(f"/proc/{torchrun_pid}/task"):
        for pid in open(f"/proc/{torchrun_pid}/task/{task}/children").read().split():
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            rank = [e for e in env if e.startswith(b"RANK=")]
            if rank:
                ranks[int(rank[0][5:])] = int(pid)
    return ranks


LONG_FORM = ("--override", "data.long_form={prob: 1.0, seconds: [3, 9], gap: [0.2, 1.5]}")


@pytest.mark.parametrize("extra", [(), LONG_FORM], ids=["utterances", "long_form"])
def test_kill9_then_resume_equals_uninterrupted(experiment, tmp_path, extra):
    _train(experiment, tmp_path / "full", *extra)
    proc = _train(experiment, tmp_path / "crash", *extra, wait=False)
    ckpt = tmp_path / "crash" / "checkpoints" / "step_00000004.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    r = subprocess.run([sys.executable, "-m", "chunkformer.bin.train", "--config",
                        str(experiment / "exp.yaml"), "--exp_dir", str(tmp_path / "crash"),
                        *extra], capture_output=True, text=True)
    assert r.returncode != 0 and "--resume" in r.stderr  # never restarts a run silently
    _train(experiment, tmp_path / "crash", *extra, "--resume")
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "crash")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # each step once in the log and in tensorboard, the redone ones with the same values
    assert _train_losses(tmp_path / "full") == _train_losses(tmp_path / "crash")
    assert _tensorboard_steps(tmp_path / "crash") == list(range(1, 9))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_stop_signal_checkpoints_then_resume_is_exact(experiment, tmp_path, sig):
    """SIGTERM / SIGUSR1 (SLURM before a time limit): a checkpoint at the next step boundary,
    a clean exit with status 75 and a message; --resume then ends where an uninterrupted run
    does."""
    longer = ("--override", "train.max_steps=16", "train.val_every=8")
    _train(experiment, tmp_path / "full", *longer)
    proc = _train(experiment, tmp_path / "stop", *longer, wait=False)
    _wait_for(tmp_path / "stop" / "checkpoints" / "step_00000002.pt", proc)
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err[-3000:]
    assert "preempted: stopped by " + sig.name in err and "Traceback" not in err
    stopped_at = json.loads(open(tmp_path / "stop" / "train_log.jsonl").readlines()[-1])["step"]
    assert 2 <= stopped_at < 16
    assert (tmp_path / "stop" / "checkpoints" / f"step_{stopped_at:08d}.pt").exists()
    _train(experiment, tmp_path / "stop", *longer, "--resume")
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "stop")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _train_losses(tmp_path / "full") == _train_losses(tmp_path / "stop")


def test_two_ranks_stop_together_and_resume_their_own_random_states(experiment, tmp_path):
    """With dropout, 2 ranks: SIGTERM to rank 1 alone stops both at the same step with one
    checkpoint holding each rank's (different) random state; the resumed run ends with the
    weights of an uninterrupted one."""
    longer = ("--override", "train.max_steps=16", "train.val_every=8",
              "model.encoder_conf.dropout_rate=0.2", "data.max_frames_in_batch=300")
    _train(experiment, tmp_path / "full", *longer, torchrun=True)
    proc = _train(experiment, tmp_path / "stop", *longer, torchrun=True, wait=False)
    _wait_for(tmp_path / "stop" / "checkpoints" / "step_00000002.pt", proc)
    os.kill(_worker_pids(proc.pid)[1], signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert "preempted: stopped by another rank's signal" in err, err[-3000:]
    latest = (tmp_path / "stop" / "checkpoints" / "latest").read_text().strip()
    state = torch.load(tmp_path / "stop" / "checkpoints" / latest, weights_only=True)
    assert state["step"] < 16 and len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])
    _train(experiment, tmp_path / "stop", *longer, "--resume", torchrun=True)
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "stop")
    assert all(torch.equal(a[k], b[k]) for k in a)


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


def test_a_rank_whose_batch_is_all_bad_keeps_step_with_the_other(experiment, tmp_path):
    """One utterance per batch, half of them missing files: at some steps one rank has
    nothing to train on while the other has a good batch. Training goes on, the ranks' weights
    stay identical (checked at every checkpoint), and the missing rows are in skipped.tsv."""
    good = [json.loads(line) for line in open(experiment / "data.list")]
    missing = [dict(r, key=f"gone-{r['key']}", wav=str(tmp_path / f"gone{i}.wav"))
               for i, r in enumerate(good)]
    (tmp_path / "train.list").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                 for r in good + missing))
    _train(experiment, tmp_path / "exp", "--override", f"data.train={tmp_path}/train.list",
           "data.max_frames_in_batch=300", "train.max_steps=12", "train.save_every=1",
           torchrun=True, timeout=240)
    rows = [line.split("\t") for line in open(tmp_path / "exp" / "skipped.tsv")]
    assert {key for _, key, _, _ in rows} <= {r["key"] for r in missing} and rows
    per_step = {}
    for step, *_ in rows:
        per_step[step] = per_step.get(step, 0) + 1
    assert 1 in per_step.values()  # a step where exactly one rank had only bad items
    assert (tmp_path / "exp" / "checkpoints" / "step_00000012.pt").exists()


@pytest.mark.parametrize("overrides", [
    ["model.model_conf.ctc_weight=1.0"],
    ["model.decoder=bitransformer", "model.decoder_conf.r_num_blocks=1",
     "model.model_conf.reverse_weight=0.0"],
], ids=["ctc_weight_1_with_decoder", "bitransformer_reverse_weight_0"])
def test_two_ranks_train_when_the_loss_leaves_a_decoder_unused(experiment, tmp_path,
                                                              overrides):
    _train(experiment, tmp_path / "exp", "--override", *overrides, "train.max_steps=4",
           torchrun=True, timeout=240)
    final = _weights(tmp_path / "exp")
    first = torch.load(tmp_path / "exp" / "checkpoints" / "step_00000002.pt",
                       weights_only=True)["model"]
    unused = "decoder." if "ctc_weight" in overrides[0] else "decoder.right_decoder."
    assert all(torch.equal(first[k], final[k]) for k in final if k.startswith(unused))
    moved = [k for k in final if k.startswith("encoder.") and not torch.equal(first[k], final[k])]
    assert moved


def test_two_ranks_train_heads_whose_labels_are_missing_from_a_batch(experiment, tmp_path):
    """A multitask model whose two classifier heads read block 0 only (the blocks above and the
    final norm get no gradient), on a list where half the utterances lack one head's label:
    some batches carry no label for it."""
    rows = [json.loads(line) for line in open(experiment / "data.list")]
    for i, r in enumerate(rows):
        r["intent"] = "ask" if i % 2 else "tell"
        if i % 4 < 2:
            r["mood"] = "calm" if i % 3 else "angry"
    (tmp_path / "heads.list").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                 for r in rows))
    cfg = yaml.safe_load((experiment / "exp.yaml").read_text())
    cfg["model"] = {"model": "multitask", "encoder": "chunkformer", "input_dim": 80,
                    "encoder_conf": cfg["model"]["encoder_conf"],
                    "heads": {"intent": {"type": "classifier", "pooling": "mean", "input": 0},
                              "mood": {"type": "classifier", "pooling": "attentive",
                                       "input": 0}}}
    cfg["tokenizer"] = {}
    cfg["data"].update(train=str(tmp_path / "heads.list"), dev=str(tmp_path / "heads.list"),
                       max_frames_in_batch=300)
    cfg["train"].update(max_steps=6)
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    _train(tmp_path, tmp_path / "exp", torchrun=True, timeout=240)
    assert (tmp_path / "exp" / "checkpoints" / "step_00000006.pt").exists()


def test_a_vocabulary_that_encodes_nothing_stops_training_with_the_reasons(experiment,
                                                                         tmp_path):
    """Every transcript has characters the units cannot encode: an error that names the
    reason with its count and the tool that explains it, never a 'done' with loss 0."""
    (tmp_path / "units.txt").write_text("<blank> 0\n<unk> 1\n▁zz 2\n<sos/eos> 3\n")
    r = _train(experiment, tmp_path / "exp", "--override", f"tokenizer.path={tmp_path}/units.txt",
               ok=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error: training data: ") and "unknown characters" in line
    assert "build_vocab --kind released" in line and "done" not in r.stdout


def test_a_dev_set_with_no_usable_utterance_is_an_error(experiment, tmp_path):
    rows = [json.loads(line) for line in open(experiment / "data.list")]
    (tmp_path / "dev.list").write_text("".join(
        json.dumps(dict(r, wav=str(tmp_path / "missing.wav")), ensure_ascii=False) + "\n"
        for r in rows[:4]))
    r = _train(experiment, tmp_path / "exp", "--override", f"data.dev={tmp_path}/dev.list",
               ok=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "error: dev data: no utterance could be used (4 skipped: unreadable audio 4)" \
        in r.stderr


@pytest.fixture(scope="module")
def small_released(tmp_path_factory, experiment):
    """A released-layout folder of the small architecture (conf/chunkformer_small.yaml,
    6 x 144 with a decoder) over the tiny corpus's vocabulary, random weights."""
    from chunkformer.data.vocab import Vocabulary
    from chunkformer.encoder.cmvn import GlobalCMVN
    from chunkformer.pretrained import build_modules

    root = Path(__file__).resolve().parents[2]
    vocab = Vocabulary.load(experiment / "vocab.txt")
    cfg = dict(yaml.safe_load((root / "conf" / "chunkformer_small.yaml").read_text()),
               output_dim=len(vocab))
    torch.manual_seed(0)
    encoder, ctc, decoder, _ = build_modules(cfg, True, GlobalCMVN(torch.zeros(80),
                                                                   torch.ones(80)))
    folder = tmp_path_factory.mktemp("small_released")
    ChunkFormerModel(encoder, ctc, decoder, vocab, cfg).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("recipe", ["vlsp", "commonvoice"])
def test_shipped_finetune_config_runs_with_its_settings(experiment, small_released, tmp_path,
                                                        recipe):
    """egs/<recipe>/conf/finetune_large.yaml as shipped (bf16, 2-step accumulation, layer-wise
    lr decay, frozen front end, dynamic contexts, 4 loader workers) on the small architecture:
    only the paths, the batch size and the number of steps are the test's."""
    root = Path(__file__).resolve().parents[2]
    (tmp_path / "exp.yaml").write_text(
        (root / "egs" / recipe / "conf" / "finetune_large.yaml").read_text())
    shipped = yaml.safe_load((tmp_path / "exp.yaml").read_text())
    assert shipped["train"]["amp"] == "bf16" and shipped["train"]["accum_steps"] == 2
    assert shipped["optim"]["layer_decay"] < 1 and shipped["train"]["freeze"]
    r = _train(tmp_path, tmp_path / "exp", "--override", f"train.init_from={small_released}",
               f"data.train={experiment}/data.list", f"data.dev={experiment}/data.list",
               "data.max_frames_in_batch=1000", "train.max_steps=4", "train.log_every=1",
               "train.val_every=2", "train.save_every=2", timeout=400)
    assert "frozen: " in r.stderr
    first = torch.load(tmp_path / "exp" / "checkpoints" / "step_00000002.pt",
                       weights_only=True)
    last = torch.load(tmp_path / "exp" / "checkpoints" / "step_00000004.pt",
                      weights_only=True)
    a, b = first["model"], last["model"]
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("encoder.embed."))
    assert not torch.equal(a["encoder.encoders.5.feed_forward.w_1.weight"],
                           b["encoder.encoders.5.feed_forward.w_1.weight"])
    lrs = {g["lr_scale"] for g in last["optimizer"]["param_groups"]}
    assert min(lrs) < max(lrs) == 1.0  # layer-wise decay
    rows = [json.loads(x) for x in open(tmp_path / "exp" / "train_log.jsonl")]
    assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2, 3, 4]
    assert all(math.isfinite(r["loss"]) for r in rows if r["split"] == "train")
    assert [r["utterances"] for r in rows if r["split"] == "dev"] == [16, 16]


def test_dev_cer_in_each_deployment_context_and_best_by_any(experiment, tmp_path):
    """train.val_contexts: dev CER/WER logged per named context; train.best_metric keeps (and
    average_model --mode best picks) checkpoints by one of them; an unknown metric is an
    error that lists the known ones."""
    exp = tmp_path / "exp"
    _train(experiment, exp, "--override",
           "train.val_contexts={full: [0, 0, 0], low: [8, 8, 2]}", "train.val_every=2",
           "train.best_metric=cer_low", "train.keep_last=1", "train.keep_best=2")
    dev = [json.loads(x) for x in open(exp / "train_log.jsonl")]
    dev = {r["step"]: r for r in dev if r["split"] == "dev"}
    assert set(dev) == {2, 4, 6, 8}
    assert all({"cer", "cer_full", "cer_low", "wer_low"} <= set(r) for r in dev.values())
    assert all(r["cer_full"] == r["cer"] for r in dev.values())  # val_context is full too
    best = sorted(dev, key=lambda s: (dev[s]["cer_low"], s))[:2]
    kept = sorted(int(p.stem[5:]) for p in (exp / "checkpoints").glob("step_*.pt"))
    assert set(best) <= set(kept) and set(kept) <= set(best) | {8}
    r = subprocess.run([sys.executable, "-m", "chunkformer.bin.average_model", "--exp_dir",
                        str(exp), "--num", "1", "--mode", "best", "--out", str(tmp_path / "f")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"averaged 1 checkpoints (steps {best[0]})" in r.stdout
    r = _train(experiment, tmp_path / "bad", "--override", "train.best_metric=cer_lo", ok=False)
    assert r.returncode == 1 and "error: train.best_metric 'cer_lo' is not one of" in r.stderr


@pytest.fixture(scope="module")
def transducer_experiment(experiment, tmp_path_factory):
    """The tiny experiment as a transducer with the hybrid loss (RNN-T, CTC, attention)."""
    root = tmp_path_factory.mktemp("rnnt_exp")
    cfg = yaml.safe_load((experiment / "exp.yaml").read_text())
    cfg["model"].update({
        "model": "transducer", "predictor": "rnn", "joint": "transducer_joint",
        "predictor_conf": {"embed_size": 16, "hidden_size": 24, "num_layers": 1,
                           "output_size": 16, "embed_dropout": 0.0, "dropout": 0.0},
        "joint_conf": {"enc_output_size": 32, "pred_output_size": 16, "join_dim": 24},
        "model_conf": {"transducer_weight": 0.75, "ctc_weight": 0.1,
                       "attention_weight": 0.15, "lsm_weight": 0.1}})
    cfg["train"]["rnnt_time_chunk"] = 16
    (root / "exp.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return root


def test_transducer_trains_resumes_exactly_and_two_ranks_agree(transducer_experiment,
                                                               tmp_path):
    """The hybrid transducer in the one trainer: kill -9 and resume == uninterrupted; two gloo
    ranks == one process accumulating two batches; the folder loads as a transducer and its
    dev CER in training is recognize's (rnnt_greedy)."""
    exp = transducer_experiment
    small = "data.max_frames_in_batch=300"
    _train(exp, tmp_path / "one", "--override", "train.accum_steps=2", small)
    _train(exp, tmp_path / "two", "--override", small, torchrun=True)
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert any(k.startswith("predictor.") for k in a) and any(k.startswith("joint.") for k in a)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    la, lb = _train_losses(tmp_path / "one"), _train_losses(tmp_path / "two")
    assert la.keys() == lb.keys() and all(abs(la[k] - lb[k]) < 1e-4 for k in la)
    log = [json.loads(x) for x in open(tmp_path / "one" / "train_log.jsonl")]
    assert all(r.get("loss_rnnt") is not None for r in log if r["split"] == "train")
    # kill -9 after step 4's checkpoint, resume: the uninterrupted run's weights and losses
    _train(exp, tmp_path / "full")
    proc = _train(exp, tmp_path / "crash", wait=False)
    _wait_for(tmp_path / "crash" / "checkpoints" / "step_00000004.pt", proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _train(exp, tmp_path / "crash", "--resume")
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "crash")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _train_losses(tmp_path / "full") == _train_losses(tmp_path / "crash")
    # the averaged folder is a transducer; training's dev CER is recognize's (rnnt_greedy)
    out = tmp_path / "full" / "final"
    r = subprocess.run([sys.executable, "-m", "chunkformer.bin.average_model", "--exp_dir",
                        str(tmp_path / "full"), "--num", "1", "--mode", "last", "--out",
                        str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert type(ChunkFormerModel.from_pretrained(out)).__name__ == "TransducerModel"
    dev_list = yaml.safe_load((exp / "exp.yaml").read_text())["data"]["dev"]
    rec = subprocess.run([sys.executable, "-m", "chunkformer.bin.recognize", "--model_dir",
                          str(out), "--data", dev_list,
                          "--output_dir", str(tmp_path / "dec"), "--chunk_size", "0",
                          "--mode", "rnnt_greedy"], capture_output=True, text=True)
    assert rec.returncode == 0, rec.stderr
    cer = float(rec.stdout.split("CER")[1].split("%")[0])
    dev = [json.loads(x) for x in open(tmp_path / "full" / "train_log.jsonl")]
    dev = [r for r in dev if r["split"] == "dev"][-1]
    assert dev["step"] == 8 and abs(dev["cer"] - cer) < 0.01


def test_fine_tune_a_released_transducer_folder(tmp_path):
    """train.init_from the reference transducer folder (its own vocabulary, no tokenizer
    given) with its encoder frozen: the encoder keeps its weights, predictor and joint learn,
    and the result is a transducer folder again."""
    fixtures = Path(__file__).resolve().parent.parent / "fixtures"
    folder = fixtures / "reference-rnnt-small" / "model"
    meta = json.loads((fixtures / "reference-rnnt-small" / "meta.json").read_text())
    rows = []
    for k, name in enumerate(("utt0_cv16k", "utt1_tts16k")):
        wav = fixtures / "reference-small" / "wavs" / f"{name}.flac"
        words = [w for w in meta["batch_decode_text"][k].split() if "<" not in w][:8]
        rows.append({"key": name, "wav": str(wav), "txt": " ".join(words),
                     "duration": sf.info(str(wav)).duration})
    (tmp_path / "data.list").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                for r in rows))
    cfg = {"model": {}, "tokenizer": {"path": None},
           "data": {"train": str(tmp_path / "data.list"), "dev": str(tmp_path / "data.list"),
                    "max_frames_in_batch": 1200, "num_workers": 0, "speed_perturb": None,
                    "spec_augment": None, "fbank": {"dither": 0.0}},
           "optim": {"lr": 0.001, "warmup_steps": 1},
           "train": {"max_steps": 2, "seed": 0, "init_from": str(folder),
                     "freeze": ["encoder."], "log_every": 1, "val_every": 2,
                     "save_every": 2, "val_context": [64, 128, 128]}}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    _train(tmp_path, tmp_path / "exp")
    tuned = _weights(tmp_path / "exp")
    start = ChunkFormerModel.from_pretrained(folder).state_dict()
    assert set(tuned) == set(start)
    assert all(torch.equal(tuned[k], start[k]) for k in start if k.startswith("encoder."))
    assert not torch.equal(tuned["joint.ffn_out.weight"], start["joint.ffn_out.weight"])
    assert not torch.equal(tuned["predictor.rnn.weight_hh_l0"],
                           start["predictor.rnn.weight_hh_l0"])
