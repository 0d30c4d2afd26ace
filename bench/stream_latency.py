"""One live stream: compute per piece, real-time factor, and how long after a token is spoken it
is final (``chunkformer.streaming``; issue 14, first step: one stream, no server yet).

    python bench/stream_latency.py            # small and large, 3 contexts, 2 min of speech
    python bench/stream_latency.py --quick    # small only, 20 s

Speech (espeak-ng sentences with pauses, 16 kHz) is fed in pieces of 100 ms as if live. For
each emitted token, its latency is the audio time when the step that emitted it ended plus
that step's compute time, minus the token's last frame's end: how long after the token was
spoken it became final. Exact streaming needs the receptive-field look-ahead
``(r + max(C, r)(N - 1)) · 8`` fbank frames (r = max(R, 7)); its column is that bound in
seconds. The small model is random-weight here too (the latency and the compute do not depend
on what it recognises); token times come from the greedy path, which random weights fill with
tokens everywhere.
"""
import os
import time

import numpy as np

import common

NAME = "stream_latency"
PIECE_SECONDS = 0.1


def measure(model_dir, context, samples, rate):
    from chunkformer.model import ChunkFormerModel

    model = ChunkFormerModel.from_pretrained(model_dir).eval()
    stream = model.stream(*context, endpoint_silence=None)
    piece = int(PIECE_SECONDS * rate)
    compute, latencies = [], []
    emitted = 0
    for i in range(0, len(samples), piece):
        start = time.perf_counter()
        stream.accept_waveform(samples[i:i + piece], rate)
        spent = time.perf_counter() - start
        compute.append(spent)
        now = min(len(samples), i + piece) / rate + spent  # audio time + compute
        ids = stream.frame_ids
        for t in range(emitted, len(ids)):
            if ids[t] != model.ctc.blank_id:
                latencies.append(now - (t + 1) * 0.08)
        emitted = len(ids)
    lat = np.array(latencies) if latencies else np.zeros(1)
    audio = len(samples) / rate
    return {"rtf": sum(compute) / audio, "piece_p50_ms": 1000 * float(np.median(compute)),
            "piece_p99_ms": 1000 * float(np.percentile(compute, 99)),
            "lat_p50": float(np.percentile(lat, 50)), "lat_p90": float(np.percentile(lat, 90)),
            "lat_p99": float(np.percentile(lat, 99)),
            "bound": (stream.lookahead + 15) / 100 + context[0] * 0.08}


def main():
    parser = common.base_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    clip = common.speech_clip(args.work_dir)
    seconds = 20 if args.quick else 120
    samples = common.tile(clip, seconds * common.SAMPLE_RATE)
    archs = ["small"] if args.quick else ["small", "large"]
    contexts = [(8, 32, 0), (8, 32, 2), (16, 64, 4)]
    rows = []
    for arch in archs:
        model_dir = common.random_model_dir(args.work_dir, arch)
        for context in contexts:
            r = measure(model_dir, context, samples, common.SAMPLE_RATE)
            rows.append([arch, "/".join(map(str, context)), f"{r['rtf']:.3f}",
                         f"{r['piece_p50_ms']:.1f} / {r['piece_p99_ms']:.1f}",
                         f"{r['lat_p50']:.2f} / {r['lat_p90']:.2f} / {r['lat_p99']:.2f}",
                         f"{r['bound']:.2f}"])
    text = "\n\n".join([
        f"# One live stream\n\n{common.environment_note(args)}",
        f"{seconds} s of 16 kHz speech fed in {int(PIECE_SECONDS * 1000)} ms pieces; "
        "random-weight models; greedy CTC.",
        common.markdown_table(["model", "C/L/R", "real-time factor",
                               "compute per piece p50 / p99 (ms)",
                               "token final after (s) p50 / p90 / p99",
                               "bound: look-ahead + chunk (s)"], rows),
    ])
    common.save_results(common.results_name(NAME, args), text)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
