"""Decoding with exported ONNX graphs (onnxruntime, CPU): files and live streams.

    onnx = OnnxModel("exp/default/onnx", int8=False)
    texts = [t.text for t in onnx.decode(feats_list, chunk_size=0)]        # full context
    texts = [t.text for t in onnx.decode(feats_list, chunk_size=8, left_context_size=32)]
    group = StreamGroup(OnnxEngine(onnx), 8, 32)                           # live streams

Full context runs ``full.onnx`` on a padded batch; chunked decoding (right context 0, the (C, L)
the folder was exported with) runs ``stream.onnx`` chunk by chunk through a
:class:`~chunkformer.streaming.group.StreamGroup`, the same code the server runs, batching
the utterances' chunks. Greedy CTC on both, as ``recognize --mode ctc_greedy``.
"""
import json
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from chunkformer.data.vocab import Vocabulary
from chunkformer.decoding.transcript import Transcript, greedy_tokens
from chunkformer.export.onnx import FULL_INPUTS, STREAM_INPUTS


class OnnxModel:
    """The graphs of an ``export_onnx`` folder and what their metadata says.

    Args:
        folder: holds ``full.onnx`` and ``stream.onnx`` (``*.int8.onnx`` with ``int8``).
        int8: use the quantised graphs.
        num_threads: onnxruntime intra-op threads (0: its default).
    """

    def __init__(self, folder, int8: bool = False, num_threads: int = 0):
        import onnxruntime as ort

        self.folder = Path(folder)
        suffix = ".int8.onnx" if int8 else ".onnx"
        paths = {g: self.folder / f"{g}{suffix}" for g in ("full", "stream")}
        for path in paths.values():
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such file (write it with "
                                        f"`python -m chunkformer.bin.export_onnx"
                                        f"{' --quantize' if int8 else ''}`)")
        options = ort.SessionOptions()
        if num_threads > 0:
            options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        # no busy-waiting between runs: a server's decode thread sleeps between chunk steps,
        # and spinning threads would burn the cores the features and the sockets need
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.sessions = {g: ort.InferenceSession(str(p), options,
                                                 providers=["CPUExecutionProvider"])
                         for g, p in paths.items()}
        meta = self.sessions["stream"].get_modelmeta().custom_metadata_map
        self.meta = meta
        self.vocab = Vocabulary(json.loads(meta["vocabulary"]))
        self.blank_id = int(meta["blank_id"])
        self.chunk_size = int(meta["chunk_size"])
        self.left_context_size = int(meta["left_context_size"])
        self.config = {"fbank_conf": json.loads(meta["fbank_conf"])}
        self.shapes = {k: int(meta[k]) for k in ("num_blocks", "output_size", "lorder")}

    def features(self, audio, sample_rate=None, start=None, end=None, channel=None):
        """Path or waveform → (T, 80) fbank, as the exported model was trained on."""
        from chunkformer.model import model_features

        return model_features(self.config, audio, sample_rate, start, end, channel)

    def check_context(self, chunk_size: int, left_context_size: int, right_context_size: int):
        """Raise ValueError unless the folder's graphs compute this context."""
        if chunk_size is None or chunk_size <= 0:
            return
        if right_context_size != 0 or (chunk_size, left_context_size) != \
                (self.chunk_size, self.left_context_size):
            raise ValueError(
                f"{self.folder}: the ONNX graphs decode full context (chunk_size ≤ 0) or "
                f"chunk {self.chunk_size}, left {self.left_context_size}, right 0 (as "
                f"exported); asked for {chunk_size}/{left_context_size}/{right_context_size}")

    def full_context(self, feats: List[torch.Tensor]) -> List[Transcript]:
        """Unpadded fbank [(T_i, 80)] → transcripts, one padded full-context batch."""
        lens = torch.tensor([f.size(0) for f in feats])
        xs = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
        log_probs, out_lens = self.sessions["full"].run(
            None, dict(zip(FULL_INPUTS, (xs.float().numpy(), lens.numpy()))))
        return [self._transcript(lp[:n].argmax(-1).tolist())
                for lp, n in zip(log_probs, out_lens.tolist())]

    def chunked(self, feats: List[torch.Tensor]) -> List[Transcript]:
        """Unpadded fbank → transcripts with the exported streaming context, every
        utterance a stream of one group (their chunks batched)."""
        from chunkformer.streaming.group import StreamGroup

        group = StreamGroup(OnnxEngine(self), self.chunk_size, self.left_context_size,
                            endpoint_silence=None)
        streams = [group.open() for _ in feats]
        for s, f in zip(streams, feats):
            s.accept_features(f)
        group.run()
        return [s.finish() for s in streams]

    def decode(self, feats: List[torch.Tensor], chunk_size: Optional[int] = 0,
               left_context_size: int = 0, right_context_size: int = 0) -> List[Transcript]:
        self.check_context(chunk_size, left_context_size, right_context_size)
        if chunk_size is None or chunk_size <= 0:
            return self.full_context(feats)
        return self.chunked(feats)

    def decode_long(self, stream_source, chunk_size: int, left_context_size: int,
                    right_context_size: int, frames_per_piece: int = 6000) -> Transcript:
        """A recording of any length (an :class:`~chunkformer.data.audio.FbankStream`), chunk by
        chunk with the streaming graph; fbank read ``frames_per_piece`` at a time."""
        from chunkformer.streaming.group import StreamGroup

        if chunk_size is None or chunk_size <= 0:
            raise ValueError("long-form decoding needs chunk_size > 0 (full context cannot "
                             "stream)")
        self.check_context(chunk_size, left_context_size, right_context_size)

        group = StreamGroup(OnnxEngine(self), self.chunk_size, self.left_context_size,
                            endpoint_silence=None)
        stream = group.open()
        for start in range(0, stream_source.num_frames, frames_per_piece):
            stream.accept_features(stream_source.read(
                start, min(start + frames_per_piece, stream_source.num_frames)))
            group.run()
        return stream.finish()

    def _transcript(self, frame_ids: List[int]) -> Transcript:
        return Transcript(greedy_tokens(frame_ids, self.blank_id), self.vocab,
                          frame_ids=frame_ids, blank=self.blank_id)


class OnnxEngine:
    """The streaming graph as a :class:`~chunkformer.streaming.group.StreamGroup` engine."""

    def __init__(self, model: OnnxModel):
        self.model = model
        self.vocab, self.blank_id = model.vocab, model.blank_id
        self.session = model.sessions["stream"]

    @classmethod
    def load(cls, folder, chunk_size: int, left_context_size: int, int8: bool = False,
             num_threads: int = 0) -> "OnnxEngine":
        model = OnnxModel(folder, int8, num_threads)
        model.check_context(chunk_size, left_context_size, 0)
        return cls(model)

    def empty_state(self, left_context_size: int):
        s = self.model.shapes
        return (torch.zeros(s["num_blocks"], 2, left_context_size, s["output_size"]),
                torch.zeros(s["num_blocks"], s["lorder"], s["output_size"]))

    def __call__(self, windows, lengths, history, att, conv, chunk_size, left_context_size,
                 needs=frozenset()):
        """As :class:`~chunkformer.streaming.group.TorchEngine`; the graph gives log-probs
        (always returned) and no encoder frames, so transducer searches cannot use it."""
        inputs = (windows.float().numpy(), lengths.numpy(), history.numpy(), att.numpy(),
                  conv.numpy())
        log_probs, att, conv = self.session.run(None, dict(zip(STREAM_INPUTS, inputs)))
        ids = torch.from_numpy(np.ascontiguousarray(log_probs.argmax(-1)))
        return ids, {"log_probs": torch.from_numpy(log_probs)}, torch.from_numpy(att), \
            torch.from_numpy(conv)
