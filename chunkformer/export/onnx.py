"""ONNX export of the encoder + CTC head, for full-context decoding and for live streaming.

Two graphs per model folder, both ending in CTC log-probabilities:

* ``full.onnx``: ``feats`` (B, T, 80) fbank, ``feats_lengths`` (B,) → ``log_probs`` (B, T', V),
  ``lengths`` (B,), T' = (T - 7) // 8. Every utterance is one chunk (full context), as
  ``ChunkFormerEncoder.forward`` with chunk size 0 computes it; B and T are dynamic.
* ``stream.onnx``: one chunk of each of B streams with explicit caches, the graph of
  ``ChunkFormerEncoder.forward_chunks`` for the exported (C, L), right context 0:
  ``feats`` (B, 8C + 7, 80), ``lengths`` (B,) real encoder frames of each chunk, ``history``
  (B,) real frames behind the caches, ``att_cache`` (N, B, 2, L, D), ``conv_cache``
  (N, B, lorder, D) → ``log_probs`` (B, C, V), ``new_att_cache``, ``new_conv_cache``.
  Exact: fed chunk by chunk it gives what offline chunked decoding gives.

Metadata (``metadata_props``, all strings): ``graph``, ``chunk_size``, ``left_context_size``,
``right_context_size``, ``subsampling`` (8), ``receptive_field`` (15), ``num_blocks``,
``output_size``, ``lorder``, ``vocab_size``, ``blank_id``, ``vocabulary`` (JSON list of the
pieces), ``fbank_conf`` (JSON), ``sample_rate`` (16000). ``quantize_int8`` writes
``*.int8.onnx`` beside them with onnxruntime's dynamic quantisation (int8 weights of the
MatMul/Gemm layers, activations quantised on the fly).

The graphs are traced with the TorchScript exporter (``dynamo=False``): it keeps B and T dynamic
through the masked-batch index arithmetic, where torch.export specialises them.
"""
import json
import logging
import warnings
from pathlib import Path
from typing import Dict

import torch
from torch import nn

from chunkformer.encoder.chunking import ChunkLayout
from chunkformer.encoder.encoder import EncoderCache
from chunkformer.encoder.subsampling import DepthwiseStridingSubsampling as Subsampling
from chunkformer.encoder.subsampling import subsampled_length

OPSET = 17
STREAM_INPUTS = ("feats", "lengths", "history", "att_cache", "conv_cache")
STREAM_OUTPUTS = ("log_probs", "new_att_cache", "new_conv_cache")
FULL_INPUTS = ("feats", "feats_lengths")
FULL_OUTPUTS = ("log_probs", "lengths")


class FullContextGraph(nn.Module):
    """Encoder in full context + CTC log-probabilities (module docstring)."""

    def __init__(self, model):
        super().__init__()
        self.encoder, self.ctc = model.encoder, model.ctc

    def forward(self, feats, feats_lengths):
        enc = self.encoder
        lens = subsampled_length(feats_lengths)
        frames = (feats.size(1) - Subsampling.receptive_field) // Subsampling.stride + 1
        # one chunk per utterance, each with an empty attention cache: concatenation, not the
        # unfold of the offline path (which the exporter cannot size dynamically)
        layout = ChunkLayout.single_chunks(lens, torch.zeros_like(lens), frames, 0, 0,
                                           enc.lorder)
        b = feats.size(0)
        cache = EncoderCache(feats.new_zeros(enc.num_blocks, b, 2, 0, enc.output_size),
                             feats.new_zeros(enc.num_blocks, b, enc.lorder, enc.output_size))
        x, _ = enc._encode_chunks(feats, layout, cache)
        x = x.masked_fill(~layout.frame_valid.unsqueeze(-1), 0.0)
        return self.ctc.log_probs(x), lens


class StreamGraph(nn.Module):
    """One chunk per stream with explicit caches + CTC log-probabilities (module docstring)."""

    def __init__(self, model, chunk_size: int, left_context_size: int):
        super().__init__()
        self.encoder, self.ctc = model.encoder, model.ctc
        self.chunk, self.left = chunk_size, left_context_size

    def forward(self, feats, lengths, history, att_cache, conv_cache):
        x, att, conv = self.encoder.forward_chunks(feats, lengths, history, att_cache,
                                                   conv_cache, self.chunk, self.left)
        return self.ctc.log_probs(x), att, conv


def example_stream_inputs(model, chunk_size: int, left_context_size: int, batch: int = 2):
    """Inputs of the streaming graph for ``batch`` streams (random features, fresh caches
    except the last stream's, whose chunk is short)."""
    enc = model.encoder
    n, d = enc.num_blocks, enc.output_size
    frames = chunk_size * Subsampling.stride + Subsampling.receptive_field - Subsampling.stride
    lengths = torch.full((batch,), chunk_size)
    lengths[-1] = max(1, chunk_size // 2)
    return (torch.randn(batch, frames, 80) * 3 + 10, lengths,
            torch.arange(batch) * chunk_size, torch.randn(n, batch, 2, left_context_size, d),
            torch.randn(n, batch, enc.lorder, d))


def metadata(model, graph: str, chunk_size: int, left_context_size: int) -> Dict[str, str]:
    enc = model.encoder
    vocab = model.vocab.tokens if model.vocab is not None else \
        [str(i) for i in range(model.ctc.ctc_lo.out_features)]
    return {"graph": graph, "chunk_size": str(chunk_size),
            "left_context_size": str(left_context_size), "right_context_size": "0",
            "subsampling": str(Subsampling.stride),
            "receptive_field": str(Subsampling.receptive_field),
            "num_blocks": str(enc.num_blocks), "output_size": str(enc.output_size),
            "lorder": str(enc.lorder), "vocab_size": str(model.ctc.ctc_lo.out_features),
            "blank_id": str(model.ctc.blank_id),
            "vocabulary": json.dumps(vocab, ensure_ascii=False),
            "fbank_conf": json.dumps(model.config.get("fbank_conf") or {}),
            "sample_rate": "16000"}


def _write(module, args, path: Path, inputs, outputs, dynamic_axes, meta: Dict[str, str]):
    import onnx

    tmp = path.with_suffix(".tmp.onnx")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shape arithmetic
        # eval mode on the wrapper too: the exporter reads the top module's flag, and a
        # training-mode wrapper would put the dropout layers into the graph
        torch.onnx.export(module.eval(), args, str(tmp), input_names=list(inputs),
                          output_names=list(outputs), dynamic_axes=dynamic_axes,
                          opset_version=OPSET, dynamo=False,
                          training=torch.onnx.TrainingMode.EVAL)
    proto = onnx.load(str(tmp))
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp))
    tmp.replace(path)


def export_onnx(model, out_dir, chunk_size: int = 8, left_context_size: int = 32,
                quantize: bool = False) -> Dict[str, Path]:
    """Write ``full.onnx`` and ``stream.onnx`` (+ ``*.int8.onnx`` with ``quantize``) to
    ``out_dir``; returns {name: path}."""
    if chunk_size <= 0 or left_context_size < 0:
        raise ValueError("the streaming graph needs chunk_size > 0 and left_context_size ≥ 0")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval().float().cpu()
    feats = torch.randn(2, 8 * 20 + 7, 80) * 3 + 10
    _write(FullContextGraph(model), (feats, torch.tensor([feats.size(1), 100])),
           out / "full.onnx", FULL_INPUTS, FULL_OUTPUTS,
           {"feats": {0: "B", 1: "T"}, "feats_lengths": {0: "B"},
            "log_probs": {0: "B", 1: "frames"}, "lengths": {0: "B"}},
           metadata(model, "full", 0, 0))
    _write(StreamGraph(model, chunk_size, left_context_size),
           example_stream_inputs(model, chunk_size, left_context_size), out / "stream.onnx",
           STREAM_INPUTS, STREAM_OUTPUTS,
           {"feats": {0: "B"}, "lengths": {0: "B"}, "history": {0: "B"},
            "att_cache": {1: "B"}, "conv_cache": {1: "B"}, "log_probs": {0: "B"},
            "new_att_cache": {1: "B"}, "new_conv_cache": {1: "B"}},
           metadata(model, "stream", chunk_size, left_context_size))
    paths = {"full": out / "full.onnx", "stream": out / "stream.onnx"}
    if quantize:
        for name in ("full", "stream"):
            paths[f"{name}.int8"] = quantize_int8(paths[name], out / f"{name}.int8.onnx")
    return paths


def quantize_int8(src: Path, dst: Path) -> Path:
    """onnxruntime dynamic quantisation (int8 weights of MatMul / Gemm), metadata kept."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = dst.with_suffix(".tmp.onnx")
    logging.disable(logging.WARNING)  # its advice to pre-process (shape inference) first
    try:
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm"])
    finally:
        logging.disable(logging.NOTSET)
    proto = onnx.load(str(tmp))
    if not proto.metadata_props:
        proto.metadata_props.extend(onnx.load(str(src)).metadata_props)
        onnx.save(proto, str(tmp))
    tmp.replace(dst)
    return dst
