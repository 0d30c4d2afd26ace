"""Serve live recognition over websockets (WeNet's runtime protocol).

    python -m chunkformer.bin.serve --model_dir exp/default/final --port 10086 \
        --chunk_size 8 --left_context_size 32 --max_connections 64
    python -m chunkformer.bin.serve --onnx_dir exp/default/onnx --port 10086

One shared model (a PyTorch folder or an ``export_onnx`` folder); every call's ready chunk is
encoded in one batched forward per step. Greedy CTC by default; ``--beam_size N`` decodes each
call with prefix beam search (n-best in final results), with ``--hotwords`` and/or ``--lm``
(``--lm_weight``, ``--word_bonus``) as ``recognize`` takes them. Needs the ``server`` extra (``pip install
.[server]``, the ``websockets`` package). The protocol, and what bad input gets, is in
:mod:`chunkformer.serving.server`; ``python -m chunkformer.bin.stream_client`` streams a WAV file.
"""
import argparse
import asyncio
import importlib.util
import logging
import sys

import torch

from chunkformer.bin.common import tool_main


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model_dir", help="released-layout model folder (PyTorch)")
    src.add_argument("--onnx_dir", help="folder written by chunkformer.bin.export_onnx")
    p.add_argument("--int8", action="store_true", help="with --onnx_dir: the int8 graphs")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=10086, help="0: any free port (printed)")
    p.add_argument("--chunk_size", type=int, default=8, help="C, encoder frames of 80 ms")
    p.add_argument("--left_context_size", type=int, default=32, help="L, encoder frames")
    p.add_argument("--endpoint_silence", type=float, default=0.8,
                   help="seconds of blank frames after speech that end an utterance")
    p.add_argument("--max_connections", type=int, default=64,
                   help="calls served at once; more are refused (try again later)")
    p.add_argument("--sample_rates", default="8000,16000",
                   help="comma-separated rates a call may announce in its start message")
    p.add_argument("--max_batch", type=int, default=64, help="chunks per forward at most")
    p.add_argument("--beam_size", type=int, default=0,
                   help="prefix beam search of this size (0: greedy CTC)")
    p.add_argument("--max_symbols", type=int, default=None,
                   help="transducer models: symbols one frame may emit at most (default 64)")
    p.add_argument("--hotwords", default=None, help="with a beam: phrases to boost (file)")
    p.add_argument("--lm", default=None, help="with a beam: word n-gram LM (ARPA)")
    p.add_argument("--lm_weight", type=float, default=0.5)
    p.add_argument("--word_bonus", type=float, default=0.0)
    p.add_argument("--num_threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--device", default="cpu")
    return p


def load_engine(args):
    """The engine named by --model_dir or --onnx_dir, checked against the contexts asked."""
    if args.onnx_dir:
        from chunkformer.export.runtime import OnnxEngine

        if args.max_symbols is not None:
            raise ValueError("--max_symbols: ONNX graphs decode greedy CTC, no transducer")
        return OnnxEngine.load(args.onnx_dir, args.chunk_size, args.left_context_size,
                               args.int8, args.num_threads)
    from chunkformer.decoding.batch import set_max_symbols
    from chunkformer.model import ChunkFormerModel
    from chunkformer.streaming.group import TorchEngine

    model = ChunkFormerModel.from_pretrained(args.model_dir, args.device)
    set_max_symbols(model, args.max_symbols)
    return TorchEngine(model)


@tool_main
def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if importlib.util.find_spec("websockets") is None:
        sys.exit("error: serving needs the websockets package: pip install 'chunkformer[server]'")
    if args.onnx_dir:  # onnxruntime gets the threads; torch (features) one, so that two
        torch.set_num_threads(1)  # thread pools do not spin against each other
    elif args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    if args.chunk_size <= 0 or args.left_context_size < 0:
        sys.exit("error: --chunk_size must be > 0 and --left_context_size ≥ 0")
    try:
        rates = tuple(int(r) for r in args.sample_rates.split(","))
    except ValueError:
        sys.exit(f"error: --sample_rates {args.sample_rates!r}: integers separated by commas")
    if (args.hotwords or args.lm) and args.beam_size <= 0:
        sys.exit("error: --hotwords and --lm need a beam (--beam_size > 0)")
    from chunkformer.decoding.bias import make_bias
    from chunkformer.serving.server import RecognitionServer

    try:
        engine = load_engine(args)
        bias = make_bias(engine.vocab, args.hotwords, args.lm, args.lm_weight, args.word_bonus)
    except ValueError as e:
        sys.exit(f"error: {e}")
    server = RecognitionServer(engine, args.chunk_size, args.left_context_size,
                               args.endpoint_silence, args.max_connections, rates,
                               args.max_batch, args.beam_size or None, bias)
    ready = asyncio.Event()

    async def run():
        task = asyncio.create_task(server.serve(args.host, args.port, ready))
        await ready.wait()
        print(f"serving on ws://{args.host}:{server.port} (chunk {args.chunk_size}, left "
              f"{args.left_context_size}, limit {args.max_connections} calls)", flush=True)
        await task

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
