"""Training throughput (audio seconds per second) and memory of masked vs padded training steps.

    . tools/env.sh && python bench/train_throughput.py                 # small + large
    python bench/train_throughput.py --quick                           # small, seconds
    python bench/train_throughput.py --configs large --ctx_large 64,128,128 --steps 3

One training step, like ``Trainer.train_step`` in fp32: ``model.train()``,
``ChunkFormerModel.forward(feats, feats_lens, targets, target_lens, C, L, R)`` → loss,
backward, gradient clipping (norm 5), AdamW step (``build_optimizer``'s parameter groups),
``zero_grad(set_to_none=True)``. The model is a random-weight model of each configuration
(encoder + CTC from ``common.random_model_dir``) plus the configuration's attention decoder
(hybrid loss, CTC weight 0.3; ``--ctc_only`` leaves it out). The batch is the fbank of
synthetic speech of mixed durations (default 1, 2, 4, 8, 12, 16 s) with random target ids.

Variants, each in its own process, for full context (C = 0) and one chunked context:
masked (the real ``feats_lens``: padding is masked out of attention, convolution and loss) and
padded (every utterance treated as if it were as long as the longest: ``feats_lens`` all equal
to T_max, targets unchanged — what a naive implementation costs). At full context each
utterance is one chunk of T'_max frames, so both variants compute the same frames and differ
only in the masks and the loss; chunked, masked skips the chunks past each utterance's end.
Per variant: median seconds per step over ``--steps`` measured steps after ``--warmup`` steps,
audio seconds per second, peak Δ RSS of the measured steps above the RSS after the warm-up
(AdamW state already allocated), and ``torch.is_anomaly_enabled()`` (must be False: anomaly
detection checks every backward op).
"""
import json
import os
import statistics
import sys
import time

import common

NAME = "train_throughput"
VARIANTS = ("masked", "padded")


def make_batch(feats, vocab_size: int, tokens_per_second: float, padded: bool, seed: int = 0):
    """[(T_i, 80)] fbank → (B, T_max, 80) feats, (B,) feats_lens, (B, U_max) targets,
    (B,) target_lens.

    Each utterance gets ``tokens_per_second`` × its duration random ids in 1 … V − 2 (neither
    blank nor sos/eos), at least 1 and fewer than its (T_i − 7) // 8 encoder frames; the same
    ``seed`` gives the same targets to both variants. ``padded``: ``feats_lens`` all T_max.
    """
    import torch
    from torch.nn.utils.rnn import pad_sequence

    from chunkformer.encoder.subsampling import subsampled_length

    gen = torch.Generator().manual_seed(seed)
    lens = torch.tensor([f.size(0) for f in feats])
    target_lens = torch.tensor([max(1, min(round(tokens_per_second * n / 100),  # 10 ms frames
                                           int(subsampled_length(n)) - 1))
                                for n in lens.tolist()])
    targets = torch.randint(1, vocab_size - 1, (len(feats), int(target_lens.max())),
                            generator=gen)
    targets = targets.masked_fill(torch.arange(targets.size(1)) >= target_lens[:, None], 0)
    xs = pad_sequence(feats, batch_first=True)
    if padded:
        lens = torch.full_like(lens, xs.size(1))
    return xs, lens, targets, target_lens


def training_model(model_dir, config: str, ctc_only: bool):
    """Random encoder + CTC of ``model_dir`` plus, unless ``ctc_only``, a random attention
    decoder of ``config``'s ``decoder`` / ``decoder_conf`` (the folder is CTC-only); train mode.
    """
    import torch
    import yaml

    from chunkformer.heads.attention_decoder import build_decoder
    from chunkformer.model import ChunkFormerModel

    model = ChunkFormerModel.from_pretrained(model_dir)
    cfg = yaml.safe_load(common.CONFIGS[config].read_text(encoding="utf-8"))
    if not ctc_only and "decoder" in cfg:
        torch.manual_seed(0)
        decoder = build_decoder(cfg["decoder"], model.ctc.ctc_lo.out_features,
                                model.encoder.output_size, cfg.get("decoder_conf") or {})
        model = ChunkFormerModel(model.encoder, model.ctc, decoder, model.vocab, model.config,
                                 model.cmvn_stats)
    return model.train()


def worker(spec):
    import torch

    from chunkformer.training.optim import build_optimizer

    torch.set_num_threads(spec["threads"])
    model = training_model(spec["model_dir"], spec["config"], spec["ctc_only"])
    optimizer = build_optimizer(model)
    batch = make_batch(torch.load(spec["feats"]), model.ctc.ctc_lo.out_features,
                       spec["tokens_per_second"], spec["variant"] == "padded")
    torch.manual_seed(0)  # dropout masks

    def step():
        """One optimizer step → (seconds, loss)."""
        t0 = time.perf_counter()
        loss = model(*batch, *spec["ctx"])["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - t0, float(loss.detach())

    for _ in range(spec["warmup"]):  # thread pools, kernels, AdamW state
        step()
    with common.PeakRSS() as peak:
        runs = [step() for _ in range(spec["steps"])]
    common.report(dict(seconds=statistics.median(s for s, _ in runs), loss=runs[0][1],
                       delta=peak.delta_mib, peak=peak.peak_mib,
                       anomaly=torch.is_anomaly_enabled(), decoder=model.decoder is not None,
                       params=sum(p.numel() for p in model.parameters())))


def main():
    parser = common.base_parser(__doc__.split("\n")[0])
    parser.add_argument("--configs", default="small,large",
                        help="comma-separated model sizes (--quick: small)")
    parser.add_argument("--durations", default=None,
                        help="comma-separated seconds per utterance (default 1,2,4,8,12,16)")
    parser.add_argument("--ctx_small", default="32,32,8",
                        help="chunk,left,right of the chunked rows of small")
    parser.add_argument("--ctx_large", default="64,128,128",
                        help="chunk,left,right of the chunked rows of large")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated subset of: {', '.join(VARIANTS)}")
    parser.add_argument("--steps", type=int, default=5, help="measured steps (--quick: 2)")
    parser.add_argument("--warmup", type=int, default=1, help="steps before measuring")
    parser.add_argument("--tokens_per_second", type=float, default=3.0)
    parser.add_argument("--ctc_only", action="store_true",
                        help="no attention decoder: CTC loss only")
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    configs = ["small"] if args.quick else args.configs.split(",")
    durations = [float(s) for s in (args.durations or ("1,2,4" if args.quick
                                                       else "1,2,4,8,12,16")).split(",")]
    steps = 2 if args.quick else args.steps
    chunked = {"small": args.ctx_small, "large": args.ctx_large}
    header = common.environment_note(args)
    feats = common.in_child("speech_features", args.work_dir, durations)
    results = {}
    for config in configs:
        model_dir = common.in_child("random_model_dir", args.work_dir, config)
        for ctx in ([0, 0, 0], [int(v) for v in chunked[config].split(",")]):
            for variant in args.variants.split(","):
                spec = dict(config=config, model_dir=str(model_dir), feats=str(feats), ctx=ctx,
                            variant=variant, steps=steps, warmup=args.warmup,
                            tokens_per_second=args.tokens_per_second,
                            ctc_only=args.ctc_only, threads=args.threads)
                print(f"running {config} {'/'.join(map(str, ctx))} {variant} …",
                      file=sys.stderr, flush=True)
                results[config, tuple(ctx), variant] = common.run_worker(__file__, spec)
    audio = sum(durations)
    rows = []
    for (config, ctx, variant), r in results.items():
        base = results.get((config, ctx, "masked"), r)
        rows.append([config, "full" if ctx[0] <= 0 else "/".join(map(str, ctx)), variant,
                     f"{r['seconds']:.2f}", f"{audio / r['seconds']:.1f}",
                     f"{r['seconds'] / base['seconds']:.2f}", f"{r['delta']:.0f}",
                     f"{r['delta'] / base['delta']:.2f}", f"{r['peak']:.0f}",
                     f"{r['loss']:.2f}"])
    per_config = {config: r for (config, _, _), r in results.items()}
    models = "; ".join(f"{c} {r['params'] / 1e6:.1f} M parameters, "
                       f"{'CTC + attention decoder' if r['decoder'] else 'CTC only'}"
                       for c, r in per_config.items())
    anomaly = sorted({r["anomaly"] for r in results.values()})
    text = ["# Training throughput, masked vs padded batch (fp32, AdamW)", "", header, "",
            f"Batch: {len(durations)} utterances of {', '.join(f'{d:g}' for d in durations)} s "
            f"({audio:g} s of audio; padded = {len(durations)} × {max(durations):g} s), "
            f"{args.tokens_per_second:g} target tokens per second; step = forward + backward + "
            f"clip + AdamW; median of {steps} steps after {args.warmup} warm-up. "
            f"Models: {models}. `OMP_WAIT_POLICY`: "
            f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}.", "",
            common.markdown_table(["config", "C/L/R", "variant", "s / step", "audio s / s",
                                   "time × masked", "peak Δ RSS MiB", "mem × masked",
                                   "peak RSS MiB", "loss, 1st step"], rows), "",
            f"`torch.is_anomaly_enabled()` during the steps: {' / '.join(map(str, anomaly))}"]
    common.save_results(common.results_name(NAME, args), "\n".join(text))


if __name__ == "__main__":
    main()
