"""The masked batch: how utterances of different lengths are cut into chunks (spec §8.3).

Every utterance is cut into chunks of C subsampled frames; all chunks of all utterances are
stacked into one (G, C, D) batch, so a batch costs what its audio costs, not B x its longest
utterance. Chunk g of utterance u (its c-th chunk) sees, in every layer, attention keys
``a = cC - L + j`` (j < L+C+R) and convolution inputs ``a = cC - lorder + j`` (j < C + 2 lorder)
in the utterance's own frame numbering; the masks below say which of those are real frames of
the same utterance (or, with a cache, of its history). Full context is the special case of one
chunk per utterance of size max(M) with L = R = 0.

All masks are pure functions of the lengths, computed once per forward and shared by layers.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from chunkformer.encoder.subsampling import DepthwiseStridingSubsampling


@dataclass
class ChunkLayout:
    """Chunk bookkeeping for one masked batch.

    Attributes:
        chunk, left, right: C, L, R in subsampled frames.
        lorder: convolution context on each side (kernel // 2).
        lengths: (B,) valid subsampled frames per utterance (M).
        chunk_utt: (G,) utterance of each chunk; chunk_index: (G,) its position c in it.
        first_chunk: (B,) index in 0..G of each utterance's first chunk.
        key_valid: (G, L+C+R) True where the attention key is a real frame.
        conv_valid: (G, C + 2 lorder) True where the convolution input is a real frame.
        frame_valid: (G, C) True where the chunk's own frame is real.
    """

    chunk: int
    left: int
    right: int
    lorder: int
    lengths: torch.Tensor
    chunk_utt: torch.Tensor
    chunk_index: torch.Tensor
    first_chunk: torch.Tensor
    key_valid: torch.Tensor
    conv_valid: torch.Tensor
    frame_valid: torch.Tensor

    @classmethod
    def build(cls, lengths, chunk, left, right, lorder, history=0):
        """Layout for utterances of ``lengths`` subsampled frames.

        ``history`` is the number of real frames held in a cache before frame 0 (endless
        decoding of a single utterance); keys/conv inputs back to ``-history`` count as real.
        """
        lengths = lengths.to(torch.long).cpu()
        num_chunks = torch.clamp((lengths + chunk - 1) // chunk, min=1)
        chunk_utt = torch.repeat_interleave(torch.arange(len(lengths)), num_chunks)
        first_chunk = torch.cumsum(num_chunks, 0) - num_chunks
        chunk_index = torch.arange(len(chunk_utt)) - first_chunk[chunk_utt]
        start = (chunk_index * chunk).unsqueeze(1)  # (G, 1) first frame of each chunk
        length = lengths[chunk_utt].unsqueeze(1)  # (G, 1)

        key = start - left + torch.arange(left + chunk + right)
        key_valid = (key >= -history) & (key < length)
        conv = start - lorder + torch.arange(chunk + 2 * lorder)
        conv_valid = (conv >= -history) & (conv < length) & (conv <= start + chunk - 1 + right)
        frame_valid = (start + torch.arange(chunk)) < length
        return cls(chunk, left, right, lorder, lengths, chunk_utt, chunk_index, first_chunk,
                   key_valid, conv_valid, frame_valid)

    @classmethod
    def single_chunks(cls, lengths, history, chunk, left, right, lorder):
        """Layout where every utterance is one chunk with its own cache: streams stepped
        together one chunk each (``lengths`` (B,) real frames ≤ C of each chunk, ``history``
        (B,) real frames behind each cache), and full context (C = the padded length, no
        cache). Tensor operations only, on the lengths' device, so it traces for export."""
        dev = lengths.device
        start = torch.zeros_like(lengths).unsqueeze(1)  # every chunk starts at its frame 0
        length, back = lengths.unsqueeze(1), -history.unsqueeze(1)
        key = torch.arange(left + chunk + right, device=dev) - left
        conv = torch.arange(chunk + 2 * lorder, device=dev) - lorder
        order = torch.arange(lengths.size(0), device=dev)
        return cls(chunk, left, right, lorder, lengths, order, torch.zeros_like(order), order,
                   key_valid=(key >= back) & (key < length),
                   conv_valid=(conv >= back) & (conv < length) & (conv <= start + chunk - 1 + right),
                   frame_valid=torch.arange(chunk, device=dev) < length)

    @property
    def num_chunks(self) -> int:
        return len(self.chunk_utt)

    def to(self, device):
        """Masks on ``device`` (index tensors stay on the CPU)."""
        for name in ("key_valid", "conv_valid", "frame_valid"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def fbank_windows(self, xs: torch.Tensor) -> torch.Tensor:
        """Cut padded fbank (B, T, F) into the windows the front end needs per chunk.

        Chunk c of an utterance needs fbank frames [8cC, 8cC + 8C + 7), so that subsampling
        gives exactly C frames. Windows overlap by 7 frames. Returns (G, 8C + 7, F).
        """
        stride = DepthwiseStridingSubsampling.stride
        size = stride * self.chunk + DepthwiseStridingSubsampling.receptive_field - stride
        hop = stride * self.chunk
        need = (int(self.chunk_index.max()) * hop + size) if self.num_chunks else size
        if xs.size(1) < need:
            xs = F.pad(xs, (0, 0, 0, need - xs.size(1)))
        windows = xs.unfold(1, size, hop)  # (B, n, F, size)
        return windows[self.chunk_utt, self.chunk_index].transpose(1, 2)  # (G, size, F)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """(G, C, D) chunk outputs → (B, max M, D) per utterance, zeros after each length."""
        max_len = int(self.lengths.max()) if len(self.lengths) else 0
        t = torch.arange(max_len)
        index = self.first_chunk.unsqueeze(1) * self.chunk + t  # (B, max M)
        valid = t < self.lengths.unsqueeze(1)
        index = torch.where(valid, index, torch.zeros_like(index)).to(x.device)
        out = x.reshape(-1, x.size(-1))[index]  # (B, max M, D)
        return out.masked_fill(~valid.to(x.device).unsqueeze(-1), 0.0)
