"""Export a model folder's encoder + CTC head to ONNX (full context and live streaming).

    python -m chunkformer.bin.export_onnx --model_dir exp/default/final \
        --output_dir exp/default/onnx --chunk_size 8 --left_context_size 32 [--quantize]

Writes ``full.onnx`` and ``stream.onnx`` (graphs, inputs and metadata:
:mod:`chunkformer.export.onnx`), with ``--quantize`` also ``full.int8.onnx`` and
``stream.int8.onnx``, then checks each graph against PyTorch on random inputs of several
lengths (largest difference of the log-probabilities printed; fp32 must be within
``--tolerance``). Decode with ``recognize --backend onnx`` or serve with ``serve --onnx_dir``.
Needs the ``onnx`` extra (``pip install .[onnx]``: onnx, onnxruntime, onnxscript).
"""
import argparse
import importlib.util
import sys

import torch

from chunkformer.bin.common import tool_main


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_dir", required=True, help="released-layout model folder")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--chunk_size", type=int, default=8, help="C of the streaming graph")
    p.add_argument("--left_context_size", type=int, default=32, help="L of the streaming graph")
    p.add_argument("--quantize", action="store_true", help="also write int8 graphs")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="largest log-probability difference allowed for the fp32 graphs")
    return p


def max_difference(model, onnx_model, chunk_size: int, left_context_size: int) -> dict:
    """Largest |ONNX - PyTorch| of the log-probabilities per graph, on random fbank: full
    context for three padded batches, streaming for three chunk steps with caches."""
    from chunkformer.export.onnx import FULL_INPUTS, STREAM_INPUTS, example_stream_inputs

    gen = torch.Generator().manual_seed(0)
    worst = {"full": 0.0, "stream": 0.0}
    with torch.no_grad():
        for lens in ([407], [1000, 555, 90], [123, 700]):
            feats = torch.randn(len(lens), max(lens), 80, generator=gen) * 3 + 10
            lens_t = torch.tensor(lens)
            enc, enc_lens = model.encoder(feats, lens_t, 0, 0, 0)
            ref = model.ctc.log_probs(enc)
            out = onnx_model.sessions["full"].run(
                None, dict(zip(FULL_INPUTS, (feats.numpy(), lens_t.numpy()))))[0]
            for r, o, n in zip(ref, out, enc_lens.tolist()):
                worst["full"] = max(worst["full"], float((r[:n] - torch.from_numpy(o[:n]))
                                                         .abs().max()))
        for batch in (1, 2, 5):
            inputs = example_stream_inputs(model, chunk_size, left_context_size, batch)
            x, _, _ = model.encoder.forward_chunks(*inputs, chunk_size, left_context_size)
            ref = model.ctc.log_probs(x)
            out = onnx_model.sessions["stream"].run(
                None, dict(zip(STREAM_INPUTS, (t.numpy() for t in inputs))))[0]
            for r, o, n in zip(ref, out, inputs[1].tolist()):
                worst["stream"] = max(worst["stream"], float((r[:n] - torch.from_numpy(o[:n]))
                                                             .abs().max()))
    return worst


@tool_main
def main(argv=None):
    args = get_parser().parse_args(argv)
    if any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxruntime")):
        sys.exit("error: export needs onnx and onnxruntime: pip install 'chunkformer[onnx]'")
    from chunkformer.export.onnx import export_onnx
    from chunkformer.export.runtime import OnnxModel
    from chunkformer.model import ChunkFormerModel

    model = ChunkFormerModel.from_pretrained(args.model_dir)
    if hasattr(model, "predictor"):
        print("note: a transducer folder: the graphs hold its encoder and CTC head (they decode "
              "ctc_greedy); the predictor and joint are not exported")
    try:
        paths = export_onnx(model, args.output_dir, args.chunk_size, args.left_context_size,
                            args.quantize)
    except ValueError as e:
        sys.exit(f"error: {e}")
    for name, path in paths.items():
        print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    for int8 in ((False, True) if args.quantize else (False,)):
        worst = max_difference(model, OnnxModel(args.output_dir, int8), args.chunk_size,
                               args.left_context_size)
        label = "int8" if int8 else "fp32"
        print(f"{label}: largest log-probability difference to PyTorch: full "
              f"{worst['full']:.2e}, stream {worst['stream']:.2e}")
        if not int8 and max(worst.values()) > args.tolerance:
            sys.exit(f"error: the fp32 graphs differ from PyTorch by more than "
                     f"{args.tolerance}: {worst}")


if __name__ == "__main__":
    main()
