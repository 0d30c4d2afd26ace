"""Real-time factor of ``batch_decode`` for (small, large) × (fp32, bf16 autocast) on the CPU.

    . tools/env.sh && python bench/decode_rtf.py                          # ~3 min of audio
    python bench/decode_rtf.py --quick                                    # a few seconds
    python bench/decode_rtf.py --reference_path /tmp/cfref                # + reference

A few synthetic-speech WAVs (random-weight models, so texts are gibberish but decoding does the
full work: audio loading, fbank, masked batch, CTC greedy) are decoded with C/L/R 64/128/128 in
one batch per run; each (implementation, config, dtype) runs in its own process, after a
warm-up decode: best time of ``--repeats``, peak memory of the first. The reference runs bf16
the way its CLI does (``--autocast_dtype bf16``: ``torch.autocast`` around the decode).
"""
import json
import sys
from pathlib import Path

import common

NAME = "decode_rtf"


def worker(spec):
    import contextlib

    import torch

    torch.set_num_threads(spec["threads"])
    if spec["impl"] == "ref":
        model = common.load_reference_model(spec["model_dir"])
    else:
        from chunkformer.model import ChunkFormerModel
        model = ChunkFormerModel.from_pretrained(spec["model_dir"])
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if spec["dtype"] == "bf16"
                else contextlib.nullcontext())

    def decode(paths):
        with torch.no_grad(), autocast:
            return model.batch_decode(paths, *spec["ctx"], total_batch_duration=spec["tbd"])

    decode(spec["wavs"][:1])  # warm-up
    runs = []
    for _ in range(spec["repeats"]):
        with common.PeakRSS() as peak:
            texts = decode(spec["wavs"])
        runs.append(peak)
    # best time; memory of the first run (an allocator keeps what a run freed for the next)
    common.report(dict(seconds=min(r.seconds for r in runs), delta=runs[0].delta_mib,
                       texts=list(texts)))


def make_wavs(work_dir, durations):
    import soundfile as sf

    clip = common.speech_clip(work_dir)
    paths = []
    for i, seconds in enumerate(durations):
        path = Path(work_dir) / f"utt-{i}-{seconds:g}s.wav"
        if not path.is_file():
            n = int(seconds * common.SAMPLE_RATE)
            sf.write(str(path), common.tile(clip, n, offset=i * 104729), common.SAMPLE_RATE,
                     subtype="PCM_16")
        paths.append(str(path))
    return paths


def main():
    parser = common.base_parser(__doc__.split("\n")[0])
    parser.add_argument("--configs", default="small,large")
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--durations", default=None,
                        help="comma-separated seconds per WAV (default 5,10,20,30,45,70)")
    parser.add_argument("--ctx", default="64,128,128", help="chunk,left,right")
    parser.add_argument("--total_batch_duration", type=float, default=1800)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    durations = [float(s) for s in (args.durations or ("2,5,8" if args.quick
                                                       else "5,10,20,30,45,70")).split(",")]
    configs = ["small"] if args.quick else args.configs.split(",")
    ctx = [int(v) for v in args.ctx.split(",")]
    header = common.environment_note(args)
    wavs = make_wavs(args.work_dir, durations)
    audio = sum(durations)
    impls = ["ours", "ref"] if args.reference_path else ["ours"]
    results = {}
    for config in configs:
        model_dir = common.in_child("random_model_dir", args.work_dir, config)
        for dtype in args.dtypes.split(","):
            for impl in impls:
                spec = dict(impl=impl, model_dir=str(model_dir), wavs=wavs, ctx=ctx,
                            tbd=args.total_batch_duration, dtype=dtype, threads=args.threads,
                            repeats=1 if args.quick else args.repeats)
                print(f"running {impl} {config} {dtype} …", file=sys.stderr, flush=True)
                results[impl, config, dtype] = common.run_worker(__file__, spec,
                                                                 args.reference_path)
    rows = []
    for (impl, config, dtype), r in results.items():
        ours = results["ours", config, dtype]
        ref = results.get(("ref", config, "fp32"))
        fp32 = results["ours", config, "fp32"] if ("ours", config, "fp32") in results else None
        same_ref = (f"{sum(a == b for a, b in zip(r['texts'], ref['texts']))}/{len(wavs)}"
                    if ref else "–")
        same_fp32 = (f"{sum(a == b for a, b in zip(r['texts'], fp32['texts']))}/{len(wavs)}"
                     if fp32 else "–")
        rows.append([impl, config, dtype, f"{r['seconds']:.2f}", f"{r['seconds'] / audio:.4f}",
                     f"{r['seconds'] / ours['seconds']:.2f}", f"{r['delta']:.0f}", same_ref,
                     same_fp32])
    text = [f"# batch_decode real-time factor (C/L/R {'/'.join(map(str, ctx))}, CTC greedy)",
            "", header, "", f"Audio: {len(wavs)} WAVs of {', '.join(f'{d:g}' for d in durations)}"
            f" s ({audio:g} s) decoded in one call; best time of "
            f"{1 if args.quick else args.repeats} runs, peak memory of the first.",
            "", common.markdown_table(
                ["impl", "config", "dtype", "wall s", "RTF", "time × ours", "peak Δ RSS MiB",
                 "texts = ref fp32", "texts = ours fp32"], rows)]
    common.save_results(common.results_name(NAME, args), "\n".join(text))


if __name__ == "__main__":
    main()
