"""RNN-T loss memory and time: torchaudio's fused whole lattice against ours (two-symbol lattice,
whole joint or checkpointed time chunks), large vocabulary.

    . tools/env.sh && python bench/rnnt_loss_memory.py            # ~2 min
    python bench/rnnt_loss_memory.py --quick                      # small sizes, checks it

One forward + backward of :func:`chunkformer.transducer.loss.rnnt_loss` on random encoder
and predictor outputs shaped like a large transducer (encoder 512, predictor 320, joint 512,
vocabulary 6992 as the released Vietnamese models) and long utterances (``--seconds`` each:
T' = seconds / 0.08 frames, U = ``--tokens_per_second`` × seconds). Each variant runs in its
own process: peak resident memory of the step (``PeakRSS``: above the RSS before it), time,
and the loss and gradient differences against the first variant (``fused``:
``torchaudio.functional.rnnt_loss`` on the whole (B, T', U+1, V) logits, fused log-softmax).
"""
import json
import sys

import common

NAME = "rnnt_loss_memory"


def worker(spec):
    import torch
    import torchaudio

    from chunkformer.transducer.heads import TransducerJoint
    from chunkformer.transducer.loss import rnnt_loss

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    b, t, u, v = spec["batch"], spec["frames"], spec["tokens"], spec["vocab"]
    joint = TransducerJoint(v, 512, 320, 512)
    enc = torch.randn(b, t, 512, requires_grad=True)
    pred = torch.randn(b, u + 1, 320, requires_grad=True)
    ys = torch.randint(1, v, (b, u))
    lens, ys_lens = torch.full((b,), t), torch.full((b,), u)
    with common.PeakRSS() as mem:
        if spec["chunk"] == "fused":
            loss = torchaudio.functional.rnnt_loss(joint(enc, pred).float(), ys.int(),
                                                   lens.int(), ys_lens.int(), blank=0,
                                                   reduction="none", clamp=-1)
        else:
            loss = rnnt_loss(joint, enc, lens, pred, ys, ys_lens, time_chunk=spec["chunk"])
        loss.sum().backward()
    common.report({"peak_mib": mem.delta_mib, "seconds": mem.seconds,
                   "loss": loss.tolist(), "grad_enc": enc.grad.flatten()[:2000].tolist(),
                   "grad_w": joint.ffn_out.weight.grad.flatten()[:2000].tolist()})


def main():
    parser = common.base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--tokens_per_second", type=float, default=4.0)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=6992)
    parser.add_argument("--chunks", default="fused,none,64,16",
                        help="fused: torchaudio on the whole logits; none: ours, whole joint")
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    if args.quick:
        args.seconds, args.vocab, args.chunks = 4.0, 500, "fused,none,8"
    frames, tokens = int(args.seconds / 0.08), int(args.tokens_per_second * args.seconds)
    rows, base = [], None
    for chunk in args.chunks.split(","):
        spec = dict(threads=args.threads, batch=args.batch, frames=frames, tokens=tokens,
                    vocab=args.vocab,
                    chunk={"none": None, "fused": "fused"}[chunk] if chunk in ("none", "fused")
                    else int(chunk))
        r = common.run_worker(__file__, spec)
        if base is None:
            base = r
        def diff(key):  # relative to the fused whole lattice's largest value
            scale = max(abs(c) for c in base[key]) or 1.0
            return max(abs(a - c) for a, c in zip(r[key], base[key])) / scale
        name = {"fused": "torchaudio, fused, whole logits", "none": "ours, whole joint"}
        rows.append([name.get(chunk, f"ours, time chunk {chunk}"), f"{r['peak_mib']:.0f}",
                     f"{r['seconds']:.2f}", f"{diff('loss'):.1e}",
                     f"{max(diff('grad_enc'), diff('grad_w')):.1e}"])
    logits_mib = args.batch * frames * (tokens + 1) * args.vocab * 4 / 2 ** 20
    text = "\n\n".join([
        f"# {NAME}", common.environment_note(args),
        f"B = {args.batch}, T' = {frames} ({args.seconds:g} s), U = {tokens}, V = "
        f"{args.vocab}; one (B, T', U+1, V) float32 logits tensor = {logits_mib:.0f} MiB.",
        common.markdown_table(["loss", "peak MiB (forward + backward)", "seconds",
                               "max rel. Δ loss", "max rel. Δ grad"], rows)])
    common.save_results(common.results_name(NAME, args), text)


if __name__ == "__main__":
    sys.exit(main())
