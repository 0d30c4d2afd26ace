"""Masked batch vs padded batch: peak memory and wall time of encoding one mixed-duration batch.

    . tools/env.sh && python bench/masked_vs_padded.py                       # 1 s … 20 min
    python bench/masked_vs_padded.py --quick                                 # small, seconds
    python bench/masked_vs_padded.py --reference_path /tmp/cfref --profile   # + reference

Variants, each in its own process (peak RSS above the RSS after model load and warm-up):
ours masked (``encoder.forward_list``), ours padded (every utterance padded to the longest and
encoded as if all frames were real: what a padded implementation costs), and with
``--reference_path`` the reference's masked ``forward_parallel_chunk`` and its padded
``encode``. Features are the fbank of synthetic speech. Our masked outputs are compared with the
reference's masked outputs (max abs diff). ``--profile`` adds torch.profiler's top ops of our
masked batch.
"""
import json
import sys
from pathlib import Path

import common

NAME = "masked_vs_padded"
VARIANTS = ("ours masked", "ours padded", "ref masked", "ref padded")


def encode_fn(variant, model, ctx):
    """feats list → list of (T'_i, D) outputs, for one variant."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    def padded(encode):
        def run(feats):
            xs = pad_sequence(feats, batch_first=True)  # (B, T_max, 80)
            lens = torch.full((len(feats),), xs.size(1), dtype=torch.int)  # all frames "real"
            enc = encode(xs, lens, *ctx)[0]
            return [enc[i, :(len(f) - 7) // 8] for i, f in enumerate(feats)]
        return run

    if variant == "ours masked":
        return lambda feats: model.encoder.forward_list(feats, *ctx)
    if variant == "ours padded" or variant == "ref padded":
        return padded(model.encode)

    def ref_masked(feats):
        lens = torch.tensor([len(f) for f in feats], dtype=torch.int)
        out, out_lens, n_chunks, _, _, _ = model.model.encoder.forward_parallel_chunk(
            xs=feats, xs_origin_lens=lens, chunk_size=ctx[0], left_context_size=ctx[1],
            right_context_size=ctx[2], offset=torch.zeros(len(feats), dtype=torch.int))
        return [o.reshape(-1, o.size(-1))[:n]
                for o, n in zip(out.split(n_chunks), out_lens.tolist())]
    return ref_masked


def worker(spec):
    import torch

    torch.set_num_threads(spec["threads"])
    if spec["variant"].startswith("ref"):
        model = common.load_reference_model(spec["model_dir"])
    else:
        from chunkformer.model import ChunkFormerModel
        model = ChunkFormerModel.from_pretrained(spec["model_dir"])
    feats = torch.load(spec["feats"])
    run = encode_fn(spec["variant"], model, spec["ctx"])
    with torch.no_grad():
        run([f[:800] for f in feats[:2]])  # warm-up (thread pools, kernels)
        if spec.get("profile"):
            return profile(run, feats)
        with common.PeakRSS() as peak:
            outs = run(feats)
    if spec.get("save"):
        torch.save([o.contiguous() for o in outs], spec["save"])
    common.report(dict(seconds=peak.seconds, peak=peak.peak_mib, delta=peak.delta_mib,
                       base=peak.base_mib))


def profile(run, feats):
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        run(feats)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    common.report(dict(table=table))


def max_abs_diff(a_path, b_path):
    import torch

    a, b = torch.load(a_path), torch.load(b_path)
    assert [x.shape for x in a] == [y.shape for y in b], "output shapes differ"
    return max(float((x - y).abs().max()) for x, y in zip(a, b) if x.numel())


def main():
    parser = common.base_parser(__doc__.split("\n")[0])
    parser.add_argument("--config", choices=sorted(common.CONFIGS), default=None,
                        help="model size (default large; small with --quick)")
    parser.add_argument("--durations", default=None,
                        help="comma-separated seconds (default 1,30,60,300,600,1200)")
    parser.add_argument("--ctx", default="64,128,128", help="chunk,left,right")
    parser.add_argument("--variants", default=None,
                        help=f"comma-separated subset of: {', '.join(VARIANTS)} "
                             "(default: all that apply; 'ours masked' always runs)")
    parser.add_argument("--profile", action="store_true", help="top ops of our masked batch")
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    config = args.config or ("small" if args.quick else "large")
    durations = [float(s) for s in (args.durations or ("1,5,20" if args.quick
                                                       else "1,30,60,300,600,1200")).split(",")]
    ctx = [int(v) for v in args.ctx.split(",")]
    header = common.environment_note(args)
    model_dir = common.in_child("random_model_dir", args.work_dir, config)
    feats = common.in_child("speech_features", args.work_dir, durations)
    variants = VARIANTS if args.reference_path else VARIANTS[:2]
    if args.variants:
        chosen = {"ours masked", *(v.strip() for v in args.variants.split(","))}
        variants = [v for v in variants if v in chosen]
    results, outputs = {}, {}
    for variant in variants:
        save = None
        if variant.endswith("masked"):
            save = outputs[variant] = str(Path(args.work_dir) / f"out-{variant[:3]}.pt")
        spec = dict(variant=variant, model_dir=str(model_dir), feats=str(feats), ctx=ctx,
                    threads=args.threads, save=save)
        print(f"running {variant} …", file=sys.stderr, flush=True)
        results[variant] = common.run_worker(__file__, spec, args.reference_path)
    base = results["ours masked"]
    audio = sum(durations)
    rows = [[v, f"{r['seconds']:.1f}", f"{r['seconds'] / audio:.3f}",
             f"{r['seconds'] / base['seconds']:.2f}", f"{r['delta']:.0f}",
             f"{r['delta'] / base['delta']:.2f}", f"{r['peak']:.0f}"]
            for v, r in results.items()]
    text = [f"# Masked vs padded batch ({config}, C/L/R {'/'.join(map(str, ctx))}, fp32)", "",
            header, "", f"Batch: {len(durations)} utterances of "
            f"{', '.join(f'{d:g}' for d in durations)} s ({audio / 60:.1f} min of audio; "
            f"padded = {len(durations)} × {max(durations):g} s).", "",
            common.markdown_table(["variant", "wall s", "s per audio s", "time × ours masked",
                                   "peak Δ RSS MiB", "mem × ours masked", "peak RSS MiB"],
                                  rows)]
    if "ref masked" in outputs:
        diff = max_abs_diff(outputs["ours masked"], outputs["ref masked"])
        text += ["", f"Our masked outputs vs the reference's masked outputs: max |Δ| = "
                     f"{diff:.2e}"]
    if args.profile:
        spec = dict(variant="ours masked", model_dir=str(model_dir), feats=str(feats), ctx=ctx,
                    threads=args.threads, profile=True)
        table = common.run_worker(__file__, spec)["table"]
        text += ["", "Profile of our masked batch (torch.profiler, by self CPU time):", "",
                 "```", table, "```"]
    common.save_results(common.results_name(NAME, args), "\n".join(text))


if __name__ == "__main__":
    main()
