"""Many live streams encoded together: one chunk of every stream that has one, per forward.

A call-center server holds dozens of calls; encoding each call's chunk alone costs dozens of
small forwards, encoding them together one forward whose matrices are B times taller. With
right context 0 a chunk needs only its own frames and its stream's caches (the last L keys and
values and the last lorder convolution inputs of every layer), so the chunks of B streams
stack into one (B, 8C + 7, F) batch with (N, B, ...) caches and give exactly what each stream
alone gives (``ChunkFormerEncoder.forward_chunks``; tested against ``decode_long``).

    group = StreamGroup(TorchEngine(model), chunk_size=8, left_context_size=32)
    a, b = group.open(), group.open()
    a.accept_waveform(pcm_a, 8000); b.accept_waveform(pcm_b, 8000)
    group.step()                      # one forward: a's and b's ready chunks
    a.partial(), b.pop_finals(), a.finish()

An engine runs the batched chunk: :class:`TorchEngine` (a PyTorch model) or
:class:`~chunkformer.export.runtime.OnnxEngine` (the exported streaming graph).
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F

from chunkformer.encoder.subsampling import subsampled_length
from chunkformer.streaming.stream import Stream, StreamError, make_search


class TorchEngine:
    """Encoder + greedy CTC of a PyTorch model, one chunk per stream."""

    def __init__(self, model):
        self.model, self.encoder = model, model.encoder
        self.vocab, self.blank_id = model.vocab, model.ctc.blank_id

    def empty_state(self, left_context_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """One fresh stream's caches: (N, 2, L, D) attention, (N, lorder, D) convolution."""
        cache = self.encoder.empty_cache(left_context_size, device=self.model.device)
        return cache.att, cache.conv

    @torch.no_grad()
    def __call__(self, windows, lengths, history, att, conv, chunk_size, left_context_size,
                 needs=frozenset()):
        """(B, 8C + 7, F) windows, (B,) lengths and history, (N, B, …) caches → (B, C) greedy
        ids, the searches' inputs named in ``needs`` ({"log_probs": (B, C, V) CTC
        log-probabilities, "encoder": (B, C, D) frames}) and the next caches."""
        dev = self.model.device
        x, att, conv = self.encoder.forward_chunks(
            windows.to(dev), lengths.to(dev), history.to(dev), att, conv, chunk_size,
            left_context_size)
        ids = self.model.ctc.best_ids(x.reshape(-1, x.size(-1))).view(x.size(0), -1)
        inputs = {"encoder": x}
        if "log_probs" in needs:  # only for streams with a CTC beam search
            inputs["log_probs"] = self.model.ctc_log_probs(x).cpu()
        return ids.cpu(), inputs, att, conv


class GroupStream(Stream):
    """A stream of a :class:`StreamGroup`: the group encodes it (``finish`` drains it)."""

    def __init__(self, group: "StreamGroup", endpoint_silence: Optional[float]):
        super().__init__(group.engine.vocab, group.engine.blank_id, group.chunk, group.left, 0,
                         0, endpoint_silence)
        self.group = group
        self.att, self.conv = group.engine.empty_state(group.left)
        self.history = 0  # encoder frames behind the caches

    def _step(self):  # the group steps its streams together
        pass

    def _flush(self):
        self.group.drain(self)


class StreamGroup:
    """Streams with the same (C, L), right context 0, stepped together (module docstring).

    Args:
        engine: :class:`TorchEngine` or an ONNX engine.
        chunk_size, left_context_size: C and L in encoder frames.
        endpoint_silence: as for :class:`~chunkformer.streaming.stream.Stream`.
        max_batch: chunks encoded per forward at most (streams with the largest backlog first).
    """

    def __init__(self, engine, chunk_size: int = 8, left_context_size: int = 32,
                 endpoint_silence: Optional[float] = 0.8, max_batch: int = 64):
        if chunk_size is None or chunk_size <= 0:
            raise StreamError("a stream needs chunk_size > 0 (full context cannot stream)")
        self.engine, self.chunk, self.left = engine, chunk_size, left_context_size
        self.endpoint_silence, self.max_batch = endpoint_silence, max(1, max_batch)
        self.streams: List[GroupStream] = []

    def open(self, beam_size: Optional[int] = None, bias=None,
             mode: Optional[str] = None) -> GroupStream:
        """A new stream in the group, decoded as ``model.stream`` decodes (greedy, or a beam
        search when ``beam_size`` and/or ``bias`` is given; transducer models with their own
        searches; :func:`~chunkformer.streaming.stream.make_search`)."""
        stream = GroupStream(self, self.endpoint_silence)
        search = make_search(getattr(self.engine, "model", self.engine), self.engine.blank_id,
                             mode, beam_size, bias)
        if search is not None:
            stream.use_search(search)
        self.streams.append(stream)
        return stream

    def close(self, stream: GroupStream):
        """Forget a stream (finished, or its caller went away)."""
        if stream in self.streams:
            self.streams.remove(stream)

    def step(self) -> int:
        """One forward over the next chunk of every stream with one ready (at most
        ``max_batch``, largest backlog first); returns the number of chunks encoded."""
        ready = [s for s in self.streams if s.ready_chunks() > 0]
        ready.sort(key=lambda s: -s.ready_chunks())
        ready = ready[:self.max_batch]
        if ready:
            self._encode(ready, tail=False)
        return len(ready)

    def run(self) -> int:
        """Step until no stream has a whole chunk ready; returns the chunks encoded."""
        total = 0
        while True:
            n = self.step()
            if not n:
                return total
            total += n

    def drain(self, stream: GroupStream):
        """Encode everything a finished stream has left (its own forwards) and drop it."""
        while stream.ready_chunks():
            self._encode([stream], tail=False)
        if stream.tail_frames():
            self._encode([stream], tail=True)
        self.close(stream)

    def _encode(self, streams: List[GroupStream], tail: bool):
        size = streams[0].chunk_frames
        windows, lengths = [], []
        for s in streams:
            stop = s.available if tail else s.next_frame + size
            w = s.frames(s.next_frame, stop)
            lengths.append(subsampled_length(w.size(0)))
            windows.append(F.pad(w, (0, 0, 0, size - w.size(0))))
        att = torch.stack([s.att for s in streams], 1)
        conv = torch.stack([s.conv for s in streams], 1)
        history = torch.tensor([s.history for s in streams])
        needs = {s.search.inputs for s in streams if s.search is not None}
        ids, inputs, att, conv = self.engine(torch.stack(windows), torch.tensor(lengths),
                                             history, att, conv, self.chunk, self.left, needs)
        for i, (s, n) in enumerate(zip(streams, lengths)):
            s.att, s.conv = att[:, i].clone(), conv[:, i].clone()
            s.history += n
            s._emit(ids[i, :n].tolist(), None if tail else 1,
                    inputs[s.search.inputs][i, :n] if s.search is not None else None)
