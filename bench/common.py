"""Shared helpers of the benchmarks: one subprocess per measured variant (peak RSS of that run
alone), random released-layout model folders, synthetic speech WAVs, markdown tables.

Nothing here imports ``chunkformer`` at module level: a worker that runs the reference package
(also named ``chunkformer``) must put it first on ``sys.path`` before anything imports it.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
CONFIGS = {"large": BENCH_DIR.parent / "conf" / "chunkformer_large.yaml",
           "small": BENCH_DIR.parent / "conf" / "chunkformer_small.yaml"}
RESULT_TAG = "BENCH_RESULT "
SAMPLE_RATE = 16000


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script")
    parser.add_argument("--reference_path", default=None,
                        help="folder(s) (os.pathsep-separated) holding chunkformer==1.2.2 and "
                             "pydub; adds the reference's rows")
    parser.add_argument("--work_dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                                           "chunkformer-bench"),
                        help="cache of model folders, WAVs and outputs")
    parser.add_argument("--results_name", default=None,
                        help="write bench/results/NAME.md (default: the script's name, "
                             "+ -quick with --quick)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser


# --------------------------------------------------------------------------- subprocesses
def run_worker(script, spec: dict, reference_path=None) -> dict:
    """Run ``script --worker SPEC`` in a fresh interpreter; return the dict it reports."""
    env = dict(os.environ)
    if reference_path:  # the worker inserts it in front of sys.path itself; keep env clean
        env["BENCH_REFERENCE_PATH"] = reference_path
    return _run_python([str(script), "--worker", json.dumps(spec)], env, spec)


def in_child(func: str, *args):
    """``common.<func>(*args)`` in a fresh interpreter → ``str`` of its result. Preparation
    (model building, long fbank) runs there so that its transient memory is not kept by the
    driver process (jemalloc with ``retain:true`` never returns memory to the system)."""
    code = (f"import json, sys; sys.path.insert(0, {str(BENCH_DIR)!r}); import common; "
            "common.report({'value': str(getattr(common, sys.argv[1])"
            "(*json.loads(sys.argv[2])))})")
    return _run_python(["-c", code, func, json.dumps(args)], dict(os.environ), func)["value"]


def _run_python(argv, env, what) -> dict:
    proc = subprocess.run([sys.executable] + argv, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-5000:])
        raise RuntimeError(f"worker {what} failed (exit code {proc.returncode})")
    return json.loads(lines[-1][len(RESULT_TAG):])


def report(result: dict):
    """Called by a worker: hand ``result`` back to :func:`run_worker`."""
    print(RESULT_TAG + json.dumps(result), flush=True)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class PeakRSS:
    """Peak resident memory of a code block above the RSS when it starts (MiB).

    Resets the kernel's high-water mark (VmHWM) by writing 5 to /proc/self/clear_refs, so the
    peak is that of the block alone; without it falls back to ru_maxrss (peak since start).
    """

    def __enter__(self):
        import gc
        gc.collect()
        self.base = _status_kib("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.reset = True
        except OSError:
            self.reset = False
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        if self.reset:
            peak = _status_kib("VmHWM")
        else:
            import resource
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.base_mib = self.base / 1024
        self.peak_mib = peak / 1024
        self.delta_mib = (peak - self.base) / 1024
        return False


def import_reference():
    """Import the reference ``chunkformer`` (1.2.2) from BENCH_REFERENCE_PATH in a worker.

    Modules it imports only for its CLI / Hub download / HF wrappers (transformers, jiwer,
    pandas, huggingface_hub) are stubbed when missing; inference does not touch them.
    """
    import importlib
    import types

    for path in reversed(os.environ["BENCH_REFERENCE_PATH"].split(os.pathsep)):
        sys.path.insert(0, path)
    for name in ("jiwer", "pandas", "huggingface_hub"):
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
            sys.modules[name].snapshot_download = None
    try:
        importlib.import_module("transformers")
    except ImportError:
        sys.modules["transformers"] = _transformers_stub()
        sys.modules["transformers.utils"] = sys.modules["transformers"].utils
    module = importlib.import_module("chunkformer")
    roots = [Path(p).resolve() for p in os.environ["BENCH_REFERENCE_PATH"].split(os.pathsep)]
    if not any(root in Path(module.__file__).resolve().parents for root in roots):
        raise ImportError(f"{module.__file__} is not the reference package under {roots}")
    return module


def _transformers_stub():
    import logging
    import types

    from torch import nn

    class PretrainedConfig:
        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)

        @classmethod
        def register_for_auto_class(cls, *args, **kwargs):
            pass

    class PreTrainedModel(nn.Module):
        def __init__(self, config, *args, **kwargs):
            super().__init__()

        def post_init(self):
            pass

        @classmethod
        def register_for_auto_class(cls, *args, **kwargs):
            pass

        @property
        def device(self):
            return next(self.parameters()).device

    stub = types.ModuleType("transformers")
    stub.utils = types.ModuleType("transformers.utils")
    stub.utils.logging = types.SimpleNamespace(get_logger=logging.getLogger)
    stub.PretrainedConfig, stub.PreTrainedModel = PretrainedConfig, PreTrainedModel
    return stub


def load_reference_model(model_dir):
    """Reference model from a released folder; fails if an encoder/CTC weight was not loaded
    (the reference always builds an attention decoder: CTC-only folders leave it random)."""
    import torch

    model = import_reference().ChunkFormerModel.from_pretrained(str(model_dir))
    saved = torch.load(Path(model_dir) / "pytorch_model.bin", map_location="cpu",
                       weights_only=True)
    missing = sorted(k for k in set(model.model.state_dict()) - set(saved)
                     if not k.startswith("decoder."))
    if missing:
        raise RuntimeError(f"reference model has weights not in the folder: {missing[:5]}")
    return model.eval()


# --------------------------------------------------------------------------- model folders
def random_model_dir(work_dir, config: str, seed: int = 0) -> Path:
    """A released-layout folder (config.yaml, pytorch_model.bin, vocab.txt, global_cmvn) of
    ``config`` (large/small) with seeded random weights, CTC only; cached in ``work_dir``."""
    out = Path(work_dir) / f"model-{config}-seed{seed}"
    if (out / "pytorch_model.bin").is_file():
        return out
    import torch
    import yaml

    from chunkformer.data.vocab import Vocabulary
    from chunkformer.encoder.cmvn import GlobalCMVN
    from chunkformer.model import ChunkFormerModel
    from chunkformer.pretrained import build_modules

    torch.manual_seed(seed)
    cfg = yaml.safe_load(CONFIGS[config].read_text(encoding="utf-8"))
    # typical log-mel statistics: mean rising from ~8 to ~14 over the bands, std ~3
    mean = torch.linspace(8.0, 14.0, int(cfg["input_dim"]))
    cmvn = GlobalCMVN(mean, torch.full_like(mean, 1 / 3.0))
    encoder, ctc, _, _ = build_modules(cfg, with_decoder=False, cmvn=cmvn)
    vocab = Vocabulary(synthetic_pieces(int(cfg["output_dim"])))
    ChunkFormerModel(encoder, ctc, None, vocab, cfg).save_pretrained(out)
    return out


def synthetic_pieces(size: int):
    """<blank>, <unk>, word-start/inner syllable pieces…, <sos/eos>: ``size`` distinct tokens."""
    onsets = ["", "b", "c", "d", "đ", "g", "h", "k", "l", "m", "n", "ph", "t", "tr", "v", "x"]
    rhymes = ["a", "ă", "â", "e", "ê", "i", "o", "ô", "ơ", "u", "ư", "an", "anh", "ang", "em",
              "inh", "ong", "ương", "ôi", "ai", "ay", "uôi", "ao", "iêu"]
    pieces = [p + o + r for p in ("\u2581", "") for o in onsets for r in rhymes]
    pieces += [f"{p}x{i}" for i in range(size) for p in ("\u2581",)]
    return ["<blank>", "<unk>"] + pieces[:size - 3] + ["<sos/eos>"]


# --------------------------------------------------------------------------- audio
SENTENCES = [  # (text, espeak-ng voice, words per minute)
    ("xin chào quý khách, cảm ơn quý khách đã gọi đến tổng đài chăm sóc khách hàng",
     "vi", 160),
    ("số tài khoản của tôi là một hai ba bốn năm sáu bảy tám chín", "vi+f3", 175),
    ("tôi muốn kiểm tra số dư và lịch sử giao dịch trong tháng này", "vi-vn-x-south", 140),
    ("anh vui lòng đọc giúp em họ tên và ngày sinh của chủ tài khoản",
     "vi-vn-x-central+m3", 165),
    ("hôm nay trời Hà Nội có mưa nhẹ, nhiệt độ khoảng hai mươi lăm độ", "vi+m2", 150),
    ("chúng tôi sẽ gửi mã xác nhận qua tin nhắn trong vòng năm phút",
     "vi-vn-x-south+f2", 170),
    ("dạ vâng, em đã ghi nhận yêu cầu của anh, xin cảm ơn anh", "vi+f4", 180),
    ("cuộc gọi có thể được ghi âm để nâng cao chất lượng dịch vụ", "vi-vn-x-central", 155),
]


def speech_clip(work_dir, repeats: int = 3, seed: int = 0) -> np.ndarray:
    """~1–2 min of 16 kHz int16 speech: espeak-ng Vietnamese sentences with silences and a
    noise floor (noise bursts and tones when espeak-ng is missing); cached in ``work_dir``."""
    path = Path(work_dir) / f"speech-clip-{repeats}-{seed}.npy"
    if path.is_file():
        return np.load(path)
    rng = np.random.default_rng(seed)
    pieces = []
    for _ in range(repeats):
        for text, voice, wpm in SENTENCES:
            pieces.append(_espeak(text, voice, wpm, work_dir) if shutil.which("espeak-ng")
                          else _tone_burst(rng))
            pieces.append(np.zeros(int(SAMPLE_RATE * rng.uniform(0.2, 1.5)), np.float32))
    wave = np.concatenate(pieces)
    wave = 0.7 * wave / max(1e-6, np.abs(wave).max())
    wave += rng.normal(0, 0.003, wave.size).astype(np.float32)  # background noise floor
    clip = np.clip(wave * 32767, -32768, 32767).astype(np.int16)
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    np.save(path, clip)
    return clip


def _espeak(text, voice, wpm, work_dir) -> np.ndarray:
    import soundfile as sf
    from scipy.signal import resample_poly

    tmp = Path(work_dir) / "espeak.wav"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(tmp), text], check=True)
    wave, rate = sf.read(tmp, dtype="float32")
    g = np.gcd(rate, SAMPLE_RATE)
    return resample_poly(wave, SAMPLE_RATE // g, rate // g).astype(np.float32)


def _tone_burst(rng) -> np.ndarray:
    t = np.arange(int(SAMPLE_RATE * rng.uniform(1.5, 4.0))) / SAMPLE_RATE
    f0 = rng.uniform(100, 250)
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t))  # ~syllable rate
    voiced = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    return (envelope * (voiced + rng.normal(0, 0.3, t.size))).astype(np.float32)


def speech_features(work_dir, durations) -> Path:
    """Fbank (T_i, 80) of synthetic speech of each duration (s), saved as a list with
    ``torch.save``; cached in ``work_dir``."""
    path = Path(work_dir) / f"feats-{'-'.join(f'{d:g}' for d in durations)}.pt"
    if not path.is_file():
        import torch

        from chunkformer.data.features import compute_fbank

        clip = speech_clip(work_dir)
        feats = [compute_fbank(torch.from_numpy(
            tile(clip, int(seconds * SAMPLE_RATE), offset=i * 7919)).float())
            for i, seconds in enumerate(durations)]
        torch.save(feats, path)
    return path


def tile(clip: np.ndarray, n: int, offset: int = 0) -> np.ndarray:
    """``n`` samples of ``clip`` repeated end to end, starting at sample ``offset``."""
    index = (np.arange(n) + offset) % clip.size
    return clip[index]


def write_wav(path, minutes: float, work_dir, seed: int = 0) -> Path:
    """A ``minutes`` long 16 kHz int16 WAV made by tiling the speech clip (fast for hours)."""
    import soundfile as sf

    path = Path(path)
    total = int(round(minutes * 60 * SAMPLE_RATE))
    if path.is_file() and sf.info(str(path)).frames == total:
        return path
    clip = speech_clip(work_dir, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(str(path), "w", SAMPLE_RATE, 1, "PCM_16") as f:
        written = 0
        while written < total:
            n = min(clip.size, total - written)
            f.write(clip[:n])
            written += n
    return path


# --------------------------------------------------------------------------- results
def markdown_table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def environment_note(args) -> str:
    import torch

    preload = os.environ.get("LD_PRELOAD", "")
    allocator = "jemalloc (LD_PRELOAD)" if "jemalloc" in preload else "glibc malloc"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"`{' '.join([Path(sys.argv[0]).name] + sys.argv[1:])}` — "
            f"{datetime.datetime.now():%Y-%m-%d %H:%M}, torch {torch.__version__}, "
            f"{args.threads} threads, {allocator}, {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs, load average at start {load:.2f}")


def results_name(script_name: str, args) -> str:
    return args.results_name or script_name + ("-quick" if args.quick else "")


def save_results(name: str, text: str) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.md"
    path.write_text(text + "\n", encoding="utf-8")
    print(text)
    print(f"\nwritten to {path}")
    return path
