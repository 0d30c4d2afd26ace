"""Decoding speed of a large transducer against the large CTC model (same encoder), CPU.

    . tools/env.sh && python bench/transducer_rtf.py              # ~3 min of audio, ~6 min
    python bench/transducer_rtf.py --quick                        # small model, checks it

The released large architecture (``conf/chunkformer_large.yaml``, 17 x 512, vocabulary 6992)
with seeded random weights, as a CTC folder and as a transducer folder with the same encoder
(LSTM predictor 1 x 640 → 320, joint 512; the released transducer's sizes are not published,
spec/rnnt.md §1). A random joint emits symbols on every frame; as the reference vector does,
its blank logit is offset so that greedy search emits ~0.4 symbols per frame, what a trained
model emits on speech. Each mode runs ``batch_decode`` on the same WAVs (C/L/R 64/128/128, one
batch) in its own process after a warm-up: best wall time of ``--repeats``, real-time factor,
symbols per frame, and the share of the time spent outside the encoder (search).
"""
import json
import sys

import common

NAME = "transducer_rtf"
TARGET_RATE = 0.4  # symbols per encoder frame


def transducer_dir(work_dir, config: str, calibration_wav: str):
    """The random CTC folder of ``config`` turned into a transducer (cached)."""
    from pathlib import Path

    out = Path(work_dir) / f"model-{config}-rnnt"
    if (out / "pytorch_model.bin").is_file():
        return out
    import torch

    from chunkformer.model import ChunkFormerModel
    from chunkformer.transducer.heads import build_transducer_heads
    from chunkformer.transducer.model import TransducerModel

    ctc = ChunkFormerModel.from_pretrained(common.random_model_dir(work_dir, config))
    width = ctc.encoder.output_size
    cfg = dict(ctc.config, model="transducer", predictor="rnn", joint="transducer_joint",
               predictor_conf={"embed_size": 256, "hidden_size": 640, "num_layers": 1,
                               "output_size": 320},
               joint_conf={"enc_output_size": width, "pred_output_size": 320,
                           "join_dim": 512},
               model_conf={"transducer_weight": 0.75, "ctc_weight": 0.25})
    torch.manual_seed(1)
    predictor, joint = build_transducer_heads(cfg, len(ctc.vocab), width)
    model = TransducerModel(ctc.encoder, ctc.ctc, predictor, joint, None, ctc.vocab, cfg,
                            ctc.cmvn_stats).eval()
    feats = model.features(calibration_wav)
    with torch.no_grad():
        enc = model.encoder.forward_list([feats], None, 0, 0)[0]
    low, high = -20.0, 40.0
    base = joint.ffn_out.bias.data[0].item()
    for _ in range(18):  # bisect the blank offset for TARGET_RATE symbols per frame
        mid = (low + high) / 2
        joint.ffn_out.bias.data[0] = base + mid
        rate = len(model.transducer_transcripts([enc], "rnnt_greedy")[0].ids) / enc.size(0)
        low, high = (mid, high) if rate > TARGET_RATE else (low, mid)
    model.save_pretrained(out)
    return out


def worker(spec):
    import torch

    from chunkformer.model import ChunkFormerModel

    torch.set_num_threads(spec["threads"])
    model = ChunkFormerModel.from_pretrained(spec["model_dir"])
    ctx, mode, beam = spec["ctx"], spec["mode"], spec["beam"]

    def decode(paths):
        with torch.no_grad():
            return model.batch_decode(paths, *ctx, mode=mode, beam_size=beam,
                                      return_timestamps=True)

    decode(spec["wavs"][:1])  # warm-up
    seconds = []
    for _ in range(spec["repeats"]):
        with common.PeakRSS() as peak:
            results = decode(spec["wavs"])
        seconds.append(peak.seconds)
    import time

    feats = [model.features(w) for w in spec["wavs"]]
    t0 = time.perf_counter()
    with torch.no_grad():
        encs = model.encoder.forward_list(feats, *ctx)
    encoder = time.perf_counter() - t0
    frames = sum(e.size(0) for e in encs)
    symbols = sum(len(r["tokens"]) for r in results)
    common.report(dict(seconds=min(seconds), encoder=encoder, rate=symbols / frames))


def main():
    from decode_rtf import make_wavs

    parser = common.base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="large")
    parser.add_argument("--durations", default="5,10,20,30,45,70")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--modes", default="ctc_greedy,ctc_prefix_beam,rnnt_greedy",
                        help="add rnnt_beam for the beam search (slow on a random joint: "
                             "its blank is not as dominant as a trained model's)")
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    if args.quick:
        args.config, args.durations, args.repeats = "small", "2,5", 1
    durations = [float(d) for d in args.durations.split(",")]
    wavs = make_wavs(args.work_dir, durations)
    audio = sum(durations)
    ctc_dir = common.in_child("random_model_dir", args.work_dir, args.config)
    rnnt_dir = transducer_dir(args.work_dir, args.config, wavs[-1])
    rows = []
    variants = {"ctc_greedy": ("CTC greedy", ctc_dir, 10),
                "ctc_prefix_beam": ("CTC prefix beam 4", ctc_dir, 4),
                "rnnt_greedy": ("RNN-T greedy", rnnt_dir, 10),
                "rnnt_beam": ("RNN-T beam 4", rnnt_dir, 4)}
    for mode in args.modes.split(","):
        name, folder, beam = variants[mode]
        print(f"running {name} …", file=sys.stderr, flush=True)
        r = common.run_worker(__file__, dict(model_dir=str(folder), wavs=wavs, mode=mode,
                                             beam=beam, ctx=[64, 128, 128],
                                             threads=args.threads, repeats=args.repeats))
        rows.append([name, f"{r['seconds']:.2f}", f"{r['seconds'] / audio:.4f}",
                     f"{r['rate']:.2f}",
                     f"{100 * max(0.0, r['seconds'] - r['encoder']) / r['seconds']:.0f} %"])
    text = "\n\n".join([
        f"# {NAME}", common.environment_note(args),
        f"{args.config} architecture, random weights; {len(wavs)} WAVs, {audio:g} s of audio "
        f"in one batch_decode call (64/128/128); best of {args.repeats}.",
        common.markdown_table(["mode", "wall s", "RTF", "symbols / frame",
                               "time outside the encoder"], rows)])
    common.save_results(common.results_name(NAME, args), text)


if __name__ == "__main__":
    sys.exit(main())
