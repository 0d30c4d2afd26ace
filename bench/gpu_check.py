"""The GPU path end to end, in one script that prints its figures (about 5-8 minutes on one
H100/H200 with the defaults; ``--device cpu --arch small --steps 8 --minutes 1`` checks the
script itself on a CPU in about two minutes).

    python bench/gpu_check.py                       # large architecture, cuda, 200 steps
    python bench/gpu_check.py --out $OUT            # also writes gpu_check.json / .md there

On a machine without soundfile / kaldiio / editdistance, carry their wheels (see
/work/.library/device/README.md) and put them on PYTHONPATH; the repository itself runs from its
folder (``PYTHONPATH=.``), no install needed.

What it does, with the released large architecture (17 x 512, random weights, a 3-block
attention decoder, hybrid loss), a BPE-sized vocabulary of random syllables and an hour of
synthetic speech-like audio (tone bursts and espeak-ng sentences when espeak-ng is there) cut
into 2-16 s utterances with random transcripts (the model can only learn their statistics; the
point is the machinery):

1. fbank precomputed (``compute_fbank``, all cores) and CMVN (``compute_cmvn``);
2. ``torchrun --nproc_per_node=1`` training (NCCL process group) in bf16 for ``--steps``
   steps with the masked batch and dynamic chunk contexts (encoder_conf.dynamic_*), logging
   throughput (audio s/s) and peak GPU memory;
3. the same run killed with SIGKILL (process group) after its mid-run checkpoint, then
   ``--resume``: its losses after the resume against the uninterrupted run's (GPU kernels are
   not bit-deterministic; bf16 tolerance);
4. fp16 with the grad scaler for half the steps (finite losses, skipped steps counted);
5. ``average_model`` (last 2) and ``recognize`` on the dev list (on the GPU);
6. model FLOPs of a training step (``torch.utils.flop_counter``) → model FLOPs utilisation at
   the measured throughput, against ``--peak_tflops`` (dense bf16: 989 for H100/H200 SXM);
7. masked vs padded training step on one mixed batch (1-16 s): time and peak memory;
8. endless decoding of ``--minutes`` minutes (60) from a WAV on disk: time and peak memory.
"""
import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import common

REPO = common.BENCH_DIR.parent


def sh(cmd, env=None, timeout=None):
    """Run a command (list), fail loudly with its output tail."""
    t0 = time.time()
    r = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True,
                       timeout=timeout, cwd=REPO)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(map(str, cmd))}\n{r.stdout[-3000:]}"
                 f"\n{r.stderr[-5000:]}")
    return r, time.time() - t0


def environment():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    env.setdefault("OMP_NUM_THREADS", "4")
    return env


# --------------------------------------------------------------------------- data
def make_corpus(work: Path, hours: float, vocab_size: int, seed: int = 0):
    """Utterances (2-16 s slices of a tiled speech clip) with random syllable transcripts
    (~3 tokens/s): train and dev lists, vocab.txt."""
    import soundfile as sf

    rng = random.Random(seed)
    units = common.synthetic_pieces(vocab_size)
    (work / "vocab.txt").write_text("".join(f"{u} {i}\n" for i, u in enumerate(units)),
                                    encoding="utf-8")
    words = [u for u in units[2:-1] if u.startswith("\u2581")]
    clip = common.speech_clip(work)
    wav_dir = work / "wavs"
    wav_dir.mkdir(parents=True, exist_ok=True)
    rows, total, i = [], 0.0, 0
    while total < hours * 3600:
        seconds = rng.uniform(2, 16)
        n = int(seconds * common.SAMPLE_RATE)
        wave = common.tile(clip, n, offset=rng.randrange(clip.size))
        path = wav_dir / f"u{i:05d}.wav"
        if not path.exists():
            sf.write(path, wave, common.SAMPLE_RATE, subtype="PCM_16")
        text = "".join(rng.choice(words) for _ in range(max(1, int(3 * seconds))))
        rows.append({"key": f"u{i:05d}", "wav": str(path), "txt": text.replace("\u2581", " ")
                     .strip(), "duration": n / common.SAMPLE_RATE})
        total, i = total + seconds, i + 1
    n_dev = min(20, max(2, len(rows) // 10))
    for name, part in (("train", rows[n_dev:]), ("dev", rows[:n_dev])):
        (work / f"{name}.list").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
    return total


def experiment_yaml(work: Path, args) -> Path:
    import yaml

    model = yaml.safe_load(common.CONFIGS[args.arch].read_text(encoding="utf-8"))
    cfg = {
        "model": model,
        "tokenizer": {"path": str(work / "vocab.txt")},
        "data": {"train": str(work / "train.list"), "dev": str(work / "dev.list"),
                 "cmvn": str(work / "global_cmvn"),
                 "train_feats_scp": str(work / "fbank_train" / "feats.scp"),
                 "dev_feats_scp": str(work / "fbank_dev" / "feats.scp"),
                 "max_frames_in_batch": args.batch_seconds * 100, "num_workers": 4,
                 "pin_memory": args.device == "cuda",
                 "spec_augment": {"num_freq_masks": 2, "freq_width": 27, "num_time_masks": 5,
                                  "time_width": 40}},
        "optim": {"lr": 1e-3, "warmup_steps": max(2, args.steps // 4)},
        "train": {"max_steps": args.steps, "amp": "bf16", "seed": 0,
                  "log_every": max(1, args.steps // 20),
                  "val_every": args.steps, "save_every": args.steps // 2,
                  "keep_last": 4},
    }
    path = work / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- training
def torchrun(config, exp, *extra):
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1",
            "--master_port=29533", "-m", "chunkformer.bin.train", "--config", config,
            "--exp_dir", exp, *extra]


def train_rows(exp: Path):
    rows = [json.loads(x) for x in open(exp / "train_log.jsonl")]
    return {r["step"]: r for r in rows if r["split"] == "train"}


def kill_after_checkpoint(cmd, checkpoint: Path, env):
    """Start ``cmd`` in its own process group; SIGKILL the group once ``checkpoint`` exists."""
    proc = subprocess.Popen([str(c) for c in cmd], env=env, cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not checkpoint.exists() and proc.poll() is None:
        time.sleep(0.05)
    if proc.poll() is not None:
        sys.exit(f"the run ended before it could be killed:\n{proc.stderr.read()[-3000:]}")
    time.sleep(0.5)  # a step or two past the checkpoint: work to redo
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


# --------------------------------------------------------------------------- in-process
def step_flops(model, batch, ctx) -> float:
    """FLOPs of one training step (forward + backward) counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model(*batch, *ctx)["loss"].backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def timed_step(model, batch, ctx, device, repeats=3):
    """Median seconds and peak memory (MiB) of a forward + backward, after a warm-up."""
    import torch

    def once():
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model(*batch, *ctx)["loss"].backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    once()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = [once() for _ in range(repeats)]
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return statistics.median(times), peak


def model_checks(args, work: Path, model_dir: Path):
    """MFU inputs, masked vs padded, endless decoding (this process, on the device)."""
    import torch

    import train_throughput
    from chunkformer.model import ChunkFormerModel

    device = torch.device(args.device)
    out = {}
    durations = [1, 2, 4, 8, 12, 16] * (4 if args.arch == "large" else 1)
    feats = torch.load(common.speech_features(work, durations))
    model = train_throughput.training_model(model_dir, args.arch, ctc_only=False).to(device)
    audio = sum(f.size(0) for f in feats) / 100
    with torch.autocast(device.type, dtype=torch.bfloat16):
        for variant in ("masked", "padded"):
            batch = [t.to(device) for t in train_throughput.make_batch(
                feats, model.ctc.ctc_lo.out_features, 3.0, variant == "padded")]
            for ctx in ((0, 0, 0), (64, 128, 128)):
                seconds, peak = timed_step(model, batch, ctx, device)
                out[f"{variant}_{ctx[0]}"] = {"seconds": seconds, "peak_mib": peak}
            if variant == "masked":
                out["flops_per_audio_second"] = step_flops(model, batch, (64, 128, 128)) / audio
    out["mixed_batch_audio_seconds"] = audio
    del model
    decoder = ChunkFormerModel.from_pretrained(model_dir, device)
    wav = common.write_wav(work / f"long-{args.minutes}.wav", args.minutes, work)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16):
        segments = decoder.endless_decode(str(wav), 64, 128, 128, total_batch_duration=1800)
    out["endless"] = {"minutes": args.minutes, "seconds": time.perf_counter() - t0,
                      "segments": len(segments), "peak_mib": (
                          torch.cuda.max_memory_allocated(device) / 2**20
                          if device.type == "cuda" else None)}
    return out


# --------------------------------------------------------------------------- main
def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--arch", default="large", choices=sorted(common.CONFIGS))
    p.add_argument("--steps", type=int, default=200, help="bf16 training steps")
    p.add_argument("--batch_seconds", type=int, default=240, help="audio per step")
    p.add_argument("--hours", type=float, default=1.0, help="synthetic training audio")
    p.add_argument("--minutes", type=float, default=60, help="endless decoding length")
    p.add_argument("--vocab_size", type=int, default=1024)
    p.add_argument("--peak_tflops", type=float, default=989.0,
                   help="the device's dense bf16 peak (H100/H200 SXM: 989)")
    p.add_argument("--work_dir", default="/tmp/chunkformer-gpu-check")
    p.add_argument("--out", default=os.environ.get("OUT"), help="folder for the results")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    work = Path(args.work_dir)
    if args.worker:
        common.report(model_checks(args, work, Path(args.worker)))
        return
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --device cpu to check the script")
    env = environment()
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # the trainer picks cuda when it sees one
    work.mkdir(parents=True, exist_ok=True)
    figures, t_start = {"device": torch.cuda.get_device_name(0) if args.device == "cuda"
                        else "cpu", "torch": torch.__version__, "arch": args.arch,
                        "steps": args.steps, "batch_seconds": args.batch_seconds}, time.time()

    hours = make_corpus(work, args.hours, args.vocab_size) / 3600
    prep = []
    for split in ("train", "dev"):
        prep.append(sh([sys.executable, "-m", "chunkformer.bin.compute_fbank", "--data",
                        work / f"{split}.list", "--output_dir", work / f"fbank_{split}",
                        "--num_workers", max(1, (os.cpu_count() or 2) - 1)], env)[1])
    prep.append(sh([sys.executable, "-m", "chunkformer.bin.compute_cmvn", "--data",
                    work / "train.list", "--output", work / "global_cmvn"], env)[1])
    figures["data"] = {"hours": round(hours, 2), "prep_seconds": round(sum(prep), 1)}
    config = experiment_yaml(work, args)

    runs = {}
    for name, extra in (("bf16", []), ("fp16", ["--override", "train.amp=fp16",
                                                f"train.max_steps={args.steps // 2}",
                                                f"train.save_every={args.steps // 2}",
                                                f"train.val_every={args.steps // 2}"])):
        exp = work / f"exp_{name}"
        subprocess.run(["rm", "-rf", str(exp)])
        _, seconds = sh(torchrun(config, exp, *extra), env)
        rows = train_rows(exp)
        speeds = [r["audio_sec_per_sec"] for s, r in sorted(rows.items())][1:] or \
            [r["audio_sec_per_sec"] for r in rows.values()]
        runs[name] = {"seconds": round(seconds, 1), "audio_s_per_s": statistics.median(speeds),
                      "gpu_peak_mib": max((r.get("gpu_peak_mib") or 0) for r in rows.values()),
                      "first_loss": rows[min(rows)]["loss"], "last_loss": rows[max(rows)]["loss"],
                      "skipped_steps": sum(r["skipped_steps"] for r in rows.values()),
                      "finite": all(r["loss"] == r["loss"] and abs(r["loss"]) != float("inf")
                                    for r in rows.values())}
    figures["training"] = runs

    # kill -9 after the mid-run checkpoint, then --resume
    exp = work / "exp_killed"
    subprocess.run(["rm", "-rf", str(exp)])
    half = args.steps // 2
    kill_after_checkpoint(torchrun(config, exp), exp / "checkpoints" / f"step_{half:08d}.pt",
                          env)
    _, seconds = sh(torchrun(config, exp, "--resume"), env)
    full, resumed = train_rows(work / "exp_bf16"), train_rows(exp)
    after = [s for s in full if s > half]
    diffs = [abs(full[s]["loss"] - resumed[s]["loss"]) for s in after]
    figures["resume"] = {"steps_compared": len(after), "max_abs_loss_diff": max(diffs),
                         "mean_abs_loss_diff": statistics.mean(diffs),
                         "loss_at_end": [full[max(full)]["loss"], resumed[max(resumed)]["loss"]],
                         "each_step_logged_once": sorted(resumed) == sorted(full)}

    # averaging and decoding
    final = work / "exp_bf16" / "final"
    _, avg_seconds = sh([sys.executable, "-m", "chunkformer.bin.average_model", "--exp_dir",
                         work / "exp_bf16", "--num", "2", "--mode", "last", "--out", final], env)
    r, dec_seconds = sh([sys.executable, "-m", "chunkformer.bin.recognize", "--model_dir", final,
                         "--data", work / "dev.list", "--output_dir", work / "decode",
                         "--device", args.device], env)
    figures["average_and_decode"] = {"average_seconds": round(avg_seconds, 1),
                                     "decode_seconds": round(dec_seconds, 1),
                                     "decode_summary": r.stdout.strip().splitlines()[-1:]}

    checks = common._run_python([str(Path(__file__)), "--worker", str(final), "--device",
                                 args.device, "--arch", args.arch, "--minutes",
                                 str(args.minutes), "--work_dir", str(work)], env,
                                {"what": "model checks"})
    speed = runs["bf16"]["audio_s_per_s"]
    checks["mfu"] = checks["flops_per_audio_second"] * speed / (args.peak_tflops * 1e12)
    figures["model_checks"] = checks
    figures["total_seconds"] = round(time.time() - t_start, 1)
    text = json.dumps(figures, indent=1)
    print(text)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "gpu_check.json").write_text(text)


if __name__ == "__main__":
    main()
