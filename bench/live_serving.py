"""Live recognition at scale: the server with 1, 8 and 32 concurrent calls, PyTorch vs ONNX vs
ONNX int8, memory over an hour, and what int8 costs in accuracy.

    python bench/live_serving.py            # all sections (~25 min on 2 cores)
    python bench/live_serving.py --quick    # trained small model only, 1 and 4 calls, 8 s

Sections:
1. Compute: one StreamGroup (what the server runs) fed 20 s of 8 kHz speech per stream, B
   streams at once, per backend: CPU seconds per second of audio per stream (real-time
   factor) and how many streams one real-time second of 2 cores could carry (1 / RTF at B).
2. Through the server: ``serve`` in its own process, B clients (asyncio, this process) each
   streaming 20 s of 8 kHz speech at real-time speed in 100 ms pieces, each piece sent once
   its audio has been spoken. Per word of the final results: when the first result that had
   decoded past the word's end arrived, minus that end (the word is final for the caller
   then; at most C x 80 ms + lag). Per result: lag = arrival - the end of the audio it
   covers (``decoded_ms``). With the
   trained model (which hears words and pauses): first partial of an utterance after its
   first word starts, final after its last word ends (this includes the endpoint silence,
   0.8 s). The server's CPU seconds per audio second, from /proc. "Real time held": every
   call's last result came within 1 s of the end of its audio.
3. Memory: one stream of 60 minutes through a StreamGroup (100 ms pieces): resident memory
   after 1 minute and at the end.
4. Accuracy: the default recipe's test set (``data/default/test``; run ``run.sh`` first)
   decoded by ``recognize`` with the trained model in PyTorch, ONNX and ONNX int8, full
   context and 8/32/0.

Models: ``trained`` is the default recipe's model (``test/fixtures/default-model``, 4 x 96);
``small`` (6 x 144) and ``large`` (17 x 512, the released architecture) have random weights
(compute and latency do not depend on the weights; their greedy paths are tokens everywhere,
so their utterance latencies are not measured).
"""
import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import common

NAME = "live_serving"
RATE = 8000
PIECE_MS = 100
CONTEXT = (8, 32)
REPO = common.BENCH_DIR.parent
TRAINED = REPO / "test" / "fixtures" / "default-model"


def telephone_speech(work_dir, seconds: float, offset: int) -> np.ndarray:
    """``seconds`` of the speech clip at 8 kHz int16, starting ``offset`` samples in."""
    import torch
    import torchaudio

    path = Path(work_dir) / "speech-clip-8k.npy"
    if not path.is_file():
        clip = torch.from_numpy(common.speech_clip(work_dir).astype(np.float64))
        y = torchaudio.functional.resample(clip, common.SAMPLE_RATE, RATE).numpy()
        np.save(path, np.clip(np.round(y), -32768, 32767).astype(np.int16))
    return common.tile(np.load(path), int(seconds * RATE), offset)


def model_dirs(args):
    dirs = {"trained": TRAINED}
    if not args.quick:
        for arch in ("small", "large"):
            dirs[arch] = common.random_model_dir(args.work_dir, arch)
    return dirs


def export(model_dir, work_dir, name) -> Path:
    """The model's ONNX folder, cached per weights (a retrained model gets a new export)."""
    import hashlib

    digest = hashlib.md5((Path(model_dir) / "pytorch_model.bin").read_bytes()).hexdigest()[:8]
    out = Path(work_dir) / f"onnx-{name}-{digest}"
    if not (out / "stream.int8.onnx").is_file():
        from chunkformer.export.onnx import export_onnx
        from chunkformer.model import ChunkFormerModel

        export_onnx(ChunkFormerModel.from_pretrained(model_dir), out, *CONTEXT, quantize=True)
    return out


def engine(backend, model_dir, onnx_dir, threads):
    if backend == "torch":
        from chunkformer.model import ChunkFormerModel
        from chunkformer.streaming.group import TorchEngine

        return TorchEngine(ChunkFormerModel.from_pretrained(model_dir))
    from chunkformer.export.runtime import OnnxEngine

    return OnnxEngine.load(onnx_dir, *CONTEXT, backend == "onnx_int8", threads)


# --------------------------------------------------------------------------- 1. compute
def compute_rtf(eng, streams: int, seconds: float, work_dir) -> float:
    from chunkformer.streaming.group import StreamGroup

    group = StreamGroup(eng, *CONTEXT, endpoint_silence=0.8)
    calls = [(group.open(), telephone_speech(work_dir, seconds, 9973 * i))
             for i in range(streams)]
    piece = RATE * PIECE_MS // 1000
    start = time.process_time()
    for i in range(0, int(seconds * RATE), piece):
        for s, x in calls:
            s.accept_waveform(x[i:i + piece], RATE)
        group.run()
    for s, _ in calls:
        s.finish()
    return (time.process_time() - start) / (streams * seconds)


# --------------------------------------------------------------------------- 2. server
def start_server(backend, model_dir, onnx_dir, threads):
    src = ["--model_dir", str(model_dir)] if backend == "torch" else \
        ["--onnx_dir", str(onnx_dir)] + (["--int8"] if backend == "onnx_int8" else [])
    cmd = [sys.executable, "-m", "chunkformer.bin.serve", *src, "--port", "0", "--host",
           "127.0.0.1", "--num_threads", str(threads), "--chunk_size", str(CONTEXT[0]),
           "--left_context_size", str(CONTEXT[1]), "--max_connections", "64"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = re.search(r":(\d+) ", proc.stdout.readline()).group(1)
    return proc, f"ws://127.0.0.1:{port}"


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def utterance_latencies(messages):
    """(first partial after the first word starts, final after the last word ends) per
    utterance with words."""
    from chunkformer.serving.client import best

    first, final, since = [], [], 0
    for i, m in enumerate(messages):
        if m.get("type") != "final_result":
            continue
        words = best(m).get("word_pieces") or []
        if words:
            partials = [p for p in messages[since:i] if p.get("type") == "partial_result"]
            if partials:
                first.append(partials[0]["arrived"] - words[0]["start"] / 1000)
            final.append(m["arrived"] - words[-1]["end"] / 1000)
        since = i + 1
    return first, final


def word_latencies(messages):
    """For every word of every final result: the arrival of the first result that had decoded
    past the word's end, minus that end (when the word became final for the caller)."""
    import bisect

    from chunkformer.serving.client import best

    results = [m for m in messages if "decoded_ms" in m]
    decoded = [m["decoded_ms"] for m in results]
    out = []
    for m in results:
        if m.get("type") != "final_result":
            continue
        for w in best(m).get("word_pieces") or []:
            k = bisect.bisect_left(decoded, w["end"])
            if k < len(results):
                out.append(results[k]["arrived"] - w["end"] / 1000)
    return out


def through_server(backend, model_dir, onnx_dir, streams, seconds, args):
    from chunkformer.serving.client import stream_audio

    proc, url = start_server(backend, model_dir, onnx_dir, args.threads)
    try:
        cpu0 = cpu_seconds(proc.pid)

        async def run_all():
            return await asyncio.gather(*(
                stream_audio(url, telephone_speech(args.work_dir, seconds, 7919 * i), RATE,
                             PIECE_MS, 1.0) for i in range(streams)))

        calls = asyncio.run(run_all())
        cpu = cpu_seconds(proc.pid) - cpu0
    finally:
        proc.terminate()
        proc.wait(10)
    lags, words, first, final, tails = [], [], [], [], []
    for messages in calls:
        lags += [m["arrived"] - m["decoded_ms"] / 1000 for m in messages
                 if m.get("type") == "partial_result"]
        words += word_latencies(messages)
        f, g = utterance_latencies(messages)
        first += f
        final += g
        tails.append(messages[-1]["arrived"] - seconds)
    return {"lag": lags, "words": words, "first": first, "final": final,
            "cpu_rtf": cpu / (streams * seconds),
            "held": max(tails) <= 1.0, "tail": max(tails)}


def pct(values, qs=(50, 90, 99)):
    if not values:
        return "–"
    return " / ".join(f"{np.percentile(values, q):.2f}" for q in qs)


# --------------------------------------------------------------------------- 3. memory
def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory_hour(eng, minutes: float, work_dir):
    from chunkformer.streaming.group import StreamGroup

    group = StreamGroup(eng, *CONTEXT, endpoint_silence=0.8)
    stream = group.open()
    minute = telephone_speech(work_dir, 60, 0)
    piece = RATE * PIECE_MS // 1000
    after_one = None
    for m in range(int(minutes)):
        for i in range(0, minute.size, piece):
            stream.accept_waveform(minute[i:i + piece], RATE)
            group.run()
            stream.pop_finals()
        if m == 0:
            after_one = rss_mib()
    stream.finish()
    return after_one, rss_mib()


# --------------------------------------------------------------------------- 4. accuracy
def accuracy(onnx_dir, work_dir):
    test = REPO / "data" / "default" / "test" / "data.list"
    if not test.is_file():
        return None
    rows = []
    for label, context in (("full", ["--chunk_size", "0"]),
                           ("8/32/0", ["--chunk_size", "8", "--left_context_size", "32",
                                       "--right_context_size", "0"])):
        row = [label]
        for backend, folder in (("torch", TRAINED), ("onnx", onnx_dir), ("onnx_int8", onnx_dir)):
            out = Path(work_dir) / f"acc-{backend}-{label.replace('/', '_')}"
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "chunkformer.bin.recognize",
                                   "--model_dir", str(folder), "--data", str(test),
                                   "--output_dir", str(out), "--backend", backend,
                                   "--num_threads", "2", *context],
                                  capture_output=True, text=True)
            spent = time.perf_counter() - start
            match = re.search(r"CER ([\d.]+)", proc.stdout)
            row.append(f"{match.group(1) if match else '?'} ({spent:.0f} s)")
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- main
def main():
    parser = common.base_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    seconds = 8 if args.quick else 20
    dirs = model_dirs(args)
    onnx = {name: export(d, args.work_dir, name) for name, d in dirs.items()}
    backends = ("torch", "onnx", "onnx_int8")
    counts = (1, 4) if args.quick else (1, 8, 32)
    sections = [f"# Live recognition at scale\n\n{common.environment_note(args)}",
                f"8 kHz speech, context {CONTEXT[0]}/{CONTEXT[1]}/0 (chunk 640 ms), "
                f"{PIECE_MS} ms pieces, greedy CTC."]

    rows = []
    for name, d in dirs.items():
        for backend in backends:
            eng = engine(backend, d, onnx[name], args.threads)
            rtfs = [compute_rtf(eng, b, seconds, args.work_dir) for b in counts]
            rows.append([name, backend] + [f"{r:.3f} ({1 / r:.0f})" for r in rtfs])
            print(rows[-1], flush=True)
    sections.append("## Compute: CPU seconds per audio second per stream (streams one "
                    "second of 2 cores carries)\n\n" + common.markdown_table(
                        ["model", "backend"] + [f"{b} stream{'s' * (b > 1)}" for b in counts],
                        rows))

    rows = []
    plan = [(name, backend, b) for name in dirs for backend in backends for b in counts
            if not (name == "large" and b == 32 and backend == "torch")]
    for name, backend, b in plan:
        r = through_server(backend, dirs[name], onnx[name], b, seconds, args)
        if name != "trained":  # random weights: no pauses heard, one utterance per call
            r["first"] = r["final"] = []
        rows.append([name, backend, b, pct(r["words"]), pct(r["lag"]), pct(r["first"]),
                     pct(r["final"]),
                     f"{r['cpu_rtf']:.3f}", f"{'yes' if r['held'] else 'no'} "
                     f"({r['tail']:.2f} s)"])
        print(rows[-1], flush=True)
    sections.append("## Through the server (seconds, p50 / p90 / p99)\n\n" +
                    common.markdown_table(
                        ["model", "backend", "calls", "word final after it is spoken",
                         "result lag after its audio",
                         "first partial after speech starts", "final after speech ends",
                         "server CPU s per audio s per call", "real time held (last result "
                         "after audio end)"], rows))

    minutes = 3 if args.quick else 60
    rows = []
    for name, backend in ([("trained", "torch")] if args.quick else
                          [("trained", "torch"), ("trained", "onnx_int8"),
                           ("small", "torch")]):
        eng = engine(backend, dirs[name], onnx[name], args.threads)
        one, end = memory_hour(eng, minutes, args.work_dir)
        rows.append([name, backend, f"{one:.0f}", f"{end:.0f}"])
        print(rows[-1], flush=True)
    sections.append(f"## Memory over one {minutes}-minute stream (resident MiB of the "
                    "process)\n\n" + common.markdown_table(
                        ["model", "backend", "after 1 minute", f"after {minutes} minutes"],
                        rows))

    if not args.quick:
        rows = accuracy(onnx["trained"], args.work_dir)
        sections.append("## Accuracy: test CER % of the trained model (decode time)\n\n" + (
            common.markdown_table(["context", "PyTorch", "ONNX", "ONNX int8"], rows)
            if rows else "data/default/test/data.list is missing: run `bash run.sh` first."))
    common.save_results(common.results_name(NAME, args), "\n\n".join(sections))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
