"""Endless (long-form) decoding: peak memory and real-time factor at 10 and 60 minutes.

    . tools/env.sh && python bench/endless_memory.py                        # large, 10 + 60 min
    python bench/endless_memory.py --quick                                  # small, 1 + 3 min
    python bench/endless_memory.py --reference_path /tmp/cfref              # + reference

Each (implementation, length) runs ``endless_decode`` on a synthetic speech WAV on disk in its
own process; peak RSS is measured above the RSS after model load and a warm-up decode. The
aim: the 60-minute peak within 10% of the 10-minute peak (memory bounded by
``total_batch_duration``, not by the length of the recording).
"""
import json
import sys
from pathlib import Path

import common

NAME = "endless_memory"


def segment_plan(config, minutes, ctx, tbd):
    """(number of encoder segments, longest segment in seconds) of our endless decoding."""
    import yaml

    from chunkformer.decoding import endless

    enc = yaml.safe_load(common.CONFIGS[config].read_text(encoding="utf-8"))["encoder_conf"]
    frames = 1 + (int(minutes * 60 * common.SAMPLE_RATE) - 400) // 160
    plan = list(endless.segment_plan(frames, *ctx, enc["num_blocks"],
                                     enc["cnn_module_kernel"] // 2, tbd))
    return len(plan), max(s.stop - s.start for s in plan) / 100


def worker(spec):
    import torch

    torch.set_num_threads(spec["threads"])
    c, left, right = spec["ctx"]
    if spec["impl"] == "ref":
        model = common.load_reference_model(spec["model_dir"])
    else:
        from chunkformer.model import ChunkFormerModel
        model = ChunkFormerModel.from_pretrained(spec["model_dir"])

    def decode(path):
        return model.endless_decode(path, c, left, right, spec["tbd"], return_timestamps=True)

    with torch.no_grad():
        decode(spec["warmup_wav"])
        with common.PeakRSS() as peak:
            segments = decode(spec["wav"])
    words = sum(len(s["decode"].split()) for s in segments)
    common.report(dict(seconds=peak.seconds, peak=peak.peak_mib, delta=peak.delta_mib,
                       base=peak.base_mib, words=words))


def main():
    parser = common.base_parser(__doc__.split("\n")[0])
    parser.add_argument("--config", choices=sorted(common.CONFIGS), default=None,
                        help="model size (default large; small with --quick)")
    parser.add_argument("--minutes", default=None, help="comma-separated (default 10,60)")
    parser.add_argument("--ctx", default="64,128,128", help="chunk,left,right")
    parser.add_argument("--total_batch_duration", type=float, default=None,
                        help="seconds per segment budget (default 1800; 60 with --quick)")
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    config = args.config or ("small" if args.quick else "large")
    minutes = [float(m) for m in (args.minutes or ("1,3" if args.quick else "10,60")).split(",")]
    tbd = args.total_batch_duration or (60.0 if args.quick else 1800.0)
    ctx = [int(v) for v in args.ctx.split(",")]
    header = common.environment_note(args)
    model_dir = common.in_child("random_model_dir", args.work_dir, config)
    work = Path(args.work_dir)
    warmup = common.write_wav(work / "warmup.wav", 0.1, args.work_dir)
    impls = ["ours", "ref"] if args.reference_path else ["ours"]
    results = {}
    for impl in impls:
        for m in minutes:
            wav = common.write_wav(work / f"speech-{m:g}min.wav", m, args.work_dir)
            spec = dict(impl=impl, model_dir=str(model_dir), wav=str(wav), ctx=ctx, tbd=tbd,
                        threads=args.threads, warmup_wav=str(warmup))
            print(f"running {impl} {m:g} min …", file=sys.stderr, flush=True)
            results[impl, m] = common.run_worker(__file__, spec, args.reference_path)
    rows, checks = [], []
    for (impl, m), r in results.items():
        count, longest = segment_plan(config, m, ctx, tbd)
        rows.append([impl, f"{m:g}", f"{r['seconds']:.1f}", f"{r['seconds'] / (60 * m):.3f}",
                     f"{r['delta']:.0f}", f"{r['peak']:.0f}", count, f"{longest:.0f}",
                     r["words"]])
    for impl in impls:
        short, long_ = results[impl, min(minutes)], results[impl, max(minutes)]
        ratio_delta = long_["delta"] / short["delta"]
        ratio_peak = long_["peak"] / short["peak"]
        verdict = "met" if ratio_peak <= 1.10 else "NOT met"
        checks.append(f"* {impl}: {max(minutes):g}-min / {min(minutes):g}-min peak RSS = "
                      f"{ratio_peak:.2f} (Δ above the loaded model: {ratio_delta:.2f}) — aim "
                      f"≤ 1.10 {verdict}")
    text = [f"# Endless decoding memory ({config}, C/L/R {'/'.join(map(str, ctx))}, "
            f"total_batch_duration {tbd:g} s, fp32)", "", header, "",
            common.markdown_table(["impl", "minutes", "wall s", "RTF", "peak Δ RSS MiB",
                                   "peak RSS MiB", "segments", "longest segment s", "words"],
                                  rows), "",
            "Segments: encoder passes of the audio (kept frames + right look-ahead); memory "
            "can only be flat in the length of the audio once it spans several.", ""] + checks
    common.save_results(common.results_name(NAME, args), "\n".join(text))


if __name__ == "__main__":
    main()
