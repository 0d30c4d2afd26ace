"""BEST-RQ pretraining throughput against CTC training of the same encoder (audio s / s).

    . tools/env.sh && python bench/ssl_throughput.py              # default recipe's 4 x 96
    python bench/ssl_throughput.py --quick                        # 2 steps, checks the script

One optimizer step as the trainer runs it (fp32): forward, backward, gradient clipping (norm 5),
AdamW (``build_optimizer``), ``zero_grad``. ASR: ``conf/train_default.yaml``'s CTC model
(``--vocab_size`` outputs, random target ids, 3 per second of audio). SSL: ``--ssl_config``'s
BEST-RQ model: quantizer targets of the unmasked fbank (one utterance at a time), span masks,
the same encoder, one head per codebook, cross-entropy on the masked frames. Both configs must
describe the same encoder (checked). Each variant runs in its own process on the same batch
(fbank of synthetic speech of mixed durations); median seconds per step after a warm-up.
"""
import json
import statistics
import sys
import time

import common

NAME = "ssl_throughput"
ROOT = common.BENCH_DIR.parent


def build(variant: str, asr_config: str, ssl_config: str, vocab_size: int):
    import yaml

    from chunkformer.model import ChunkFormerModel
    from chunkformer.pretrained import build_modules
    from chunkformer.ssl.bestrq import BestRQModel

    asr = yaml.safe_load(open(asr_config, encoding="utf-8"))["model"]
    ssl = yaml.safe_load(open(ssl_config, encoding="utf-8"))["model"]
    if asr["encoder_conf"] != ssl["encoder_conf"]:
        raise SystemExit(f"{asr_config} and {ssl_config} describe different encoders")
    if variant == "ssl":
        return BestRQModel.from_config(ssl)
    cfg = dict(asr, output_dim=vocab_size)
    encoder, ctc, _, _ = build_modules(cfg, False, None)
    return ChunkFormerModel(encoder, ctc, None, None, cfg)


def worker(spec):
    import torch
    from torch.nn.utils.rnn import pad_sequence

    from chunkformer.encoder.subsampling import subsampled_length
    from chunkformer.training.optim import build_optimizer

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    model = build(spec["variant"], spec["asr_config"], spec["ssl_config"], spec["vocab_size"])
    model.train()
    optimizer = build_optimizer(model)
    feats = torch.load(spec["feats"])
    lens = torch.tensor([f.size(0) for f in feats])
    target_lens = torch.tensor([max(1, min(3 * n // 100, int(subsampled_length(n)) - 1))
                                for n in lens.tolist()])
    targets = torch.randint(1, spec["vocab_size"] - 1, (len(feats), int(target_lens.max())))
    batch = (pad_sequence(feats, batch_first=True), lens, targets, target_lens)

    def step():
        t0 = time.perf_counter()
        loss = model(*batch, 0, 0, 0)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    for _ in range(spec["warmup"]):
        step()
    seconds = statistics.median(step() for _ in range(spec["steps"]))
    common.report(dict(seconds=seconds, params=sum(p.numel() for p in model.parameters())))


def main():
    parser = common.base_parser(__doc__.split("\n")[0])
    parser.add_argument("--asr_config", default=str(ROOT / "conf" / "train_default.yaml"))
    parser.add_argument("--ssl_config", default=str(ROOT / "conf" / "ssl_bestrq.yaml"))
    parser.add_argument("--vocab_size", type=int, default=300)
    parser.add_argument("--durations", default="2,3,3,4,4,4,5,6",
                        help="seconds per utterance of the batch (default: 31 s)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    durations = [float(s) for s in args.durations.split(",")]
    steps = 2 if args.quick else args.steps
    feats = common.in_child("speech_features", args.work_dir, durations)
    results = {}
    for variant in ("asr", "ssl"):
        print(f"running {variant} …", file=sys.stderr, flush=True)
        spec = dict(variant=variant, asr_config=args.asr_config, ssl_config=args.ssl_config,
                    vocab_size=args.vocab_size, feats=str(feats), threads=args.threads,
                    steps=steps, warmup=args.warmup)
        results[variant] = common.run_worker(__file__, spec)
    audio = sum(durations)
    rows = [[variant, f"{r['params'] / 1e6:.2f}", f"{r['seconds'] * 1000:.0f}",
             f"{audio / r['seconds']:.0f}", f"{r['seconds'] / results['asr']['seconds']:.2f}"]
            for variant, r in results.items()]
    text = ["# BEST-RQ pretraining vs CTC training throughput (same encoder, fp32)", "",
            common.environment_note(args), "",
            f"Batch: {len(durations)} utterances, {audio:g} s of audio; step = forward + "
            f"backward + clip + AdamW; median of {steps} steps after {args.warmup} warm-up. "
            f"ASR: {args.asr_config} (CTC, {args.vocab_size} outputs); SSL: {args.ssl_config}.",
            "", common.markdown_table(["model", "M params", "ms / step", "audio s / s",
                                       "time × ASR"], rows)]
    common.save_results(common.results_name(NAME, args), "\n".join(text))


if __name__ == "__main__":
    main()
