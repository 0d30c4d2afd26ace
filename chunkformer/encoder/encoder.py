"""ChunkFormerEncoder: CMVN → 8x subsampling → N ChunkFormer blocks → final LayerNorm.

There is one computation, the masked batch (chunking.py), used for every mode:
* ``forward(xs, xs_lens, C, L, R)``: padded batch in, padded batch out; C ≤ 0 (or None) is full
  context. Each utterance's output is the same whatever else is in the batch and however much
  padding follows it (the released code lets padding leak into the last frames, spec §8.1).
* ``forward_segment(feats, C, L, R, cache, keep)``: one piece of an endless stream, carrying
  attention and convolution caches from the previous piece (spec §9).
Constructor keywords mirror the ``encoder_conf`` section of released configs; defaults are the
released large model.
"""
from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import nn

from chunkformer.encoder.chunking import ChunkLayout
from chunkformer.encoder.cmvn import GlobalCMVN
from chunkformer.encoder.layer import ChunkFormerLayer
from chunkformer.encoder.position import relative_position_table
from chunkformer.encoder.subsampling import DepthwiseStridingSubsampling, subsampled_length

# Largest front-end activation (elements) computed at once: the first 2-D conv of a 15-minute
# segment would otherwise take several GiB (the released code's memory peak).
MAX_FRONTEND_ELEMENTS = 1 << 24


@dataclass
class EncoderCache:
    """State carried from one segment of a long utterance to the next.

    att: (N, 2, L, D) keys and values of the last L frames seen, per layer.
    conv: (N, lorder, D) GLU outputs of the last lorder frames, per layer.
    history: number of real frames behind the cache (0 for a fresh stream).
    """

    att: torch.Tensor
    conv: torch.Tensor
    history: int = 0


class ChunkFormerEncoder(nn.Module):
    def __init__(self, input_size: int = 80, output_size: int = 512, attention_heads: int = 8,
                 linear_units: int = 2048, num_blocks: int = 17, cnn_module_kernel: int = 15,
                 dropout_rate: float = 0.1, positional_dropout_rate: float = 0.1,
                 attention_dropout_rate: float = 0.1, activation_type: str = "swish",
                 cnn_module_norm: str = "layer_norm", norm_eps: float = 1e-5,
                 cmvn: Optional[GlobalCMVN] = None):
        super().__init__()
        self.output_size = output_size
        self.global_cmvn = cmvn
        self.embed = DepthwiseStridingSubsampling(input_size, output_size)
        self.embed_dropout = nn.Dropout(positional_dropout_rate)
        self.encoders = nn.ModuleList(
            ChunkFormerLayer(output_size, attention_heads, linear_units, cnn_module_kernel,
                             dropout_rate, attention_dropout_rate, activation_type,
                             cnn_module_norm, norm_eps)
            for _ in range(num_blocks))
        self.after_norm = nn.LayerNorm(output_size, eps=norm_eps)
        self.lorder = cnn_module_kernel // 2

    @property
    def num_blocks(self) -> int:
        return len(self.encoders)

    def forward(self, xs: torch.Tensor, xs_lens: torch.Tensor, chunk_size: Optional[int] = 0,
                left_context_size: int = 0, right_context_size: int = 0,
                return_layers: bool = False):
        """Encode a padded batch.

        Args:
            xs: (B, T, F) fbank, padded; xs_lens: (B,) valid frames.
            chunk_size, left_context_size, right_context_size: C, L, R in subsampled frames;
                C ≤ 0 or None means full context.
            return_layers: also return every block's output (before the final LayerNorm), for
                heads that read a weighted sum of layers or a chosen layer.
        Returns:
            (B, T', D) encoder output (zero after each length), (B,) lengths T' = (T - 7) // 8;
            with ``return_layers`` also a list of N (B, T', D) block outputs.
        """
        lens = subsampled_length(xs_lens.to(torch.long))
        layout = self.layout(lens, chunk_size, left_context_size, right_context_size)
        layers: Optional[List[torch.Tensor]] = [] if return_layers else None
        x, _ = self._encode_chunks(layout.fbank_windows(xs), layout, layers=layers)
        if return_layers:
            return layout.unpack(x), lens.to(xs.device), [layout.unpack(h) for h in layers]
        return layout.unpack(x), lens.to(xs.device)

    def forward_list(self, feats: List[torch.Tensor], chunk_size, left_context_size,
                     right_context_size) -> List[torch.Tensor]:
        """Masked batch on unpadded features [(T_i, F)] → [(T'_i, D)] (reference
        ``forward_parallel_chunk`` semantics)."""
        lens = torch.tensor([f.size(0) for f in feats])
        xs = nn.utils.rnn.pad_sequence(feats, batch_first=True)
        out, out_lens = self.forward(xs, lens, chunk_size, left_context_size, right_context_size)
        return [o[:n] for o, n in zip(out, out_lens.tolist())]

    def layout(self, lens, chunk_size, left, right, history: int = 0) -> ChunkLayout:
        if chunk_size is None or chunk_size <= 0:  # full context: one chunk per utterance
            chunk_size, left, right = max(1, int(lens.max())), 0, 0
        if left < 0 or right < 0:
            raise ValueError(f"context sizes must be ≥ 0, got left={left} right={right}")
        return ChunkLayout.build(lens, chunk_size, left, right, self.lorder, history)

    def forward_segment(self, feats: torch.Tensor, chunk_size: int, left_context_size: int,
                        right_context_size: int, cache: Optional[EncoderCache], keep: int,
                        layers: Optional[list] = None):
        """Encode one segment (T, F) of a long utterance after the frames held in ``cache``.

        Returns the (T', D) output of the segment and the cache for a segment that starts at
        subsampled frame ``keep`` of this one. A ``layers`` list receives the N blocks' (T', D)
        outputs.
        """
        if cache is None:
            cache = self.empty_cache(left_context_size, feats.dtype, feats.device)
        lens = subsampled_length(torch.tensor([feats.size(0)]))
        layout = self.layout(lens, chunk_size, left_context_size, right_context_size,
                             cache.history)
        blocks: Optional[list] = [] if layers is not None else None
        x, new_cache = self._encode_chunks(layout.fbank_windows(feats.unsqueeze(0)), layout,
                                           cache, keep, layers=blocks)
        new_cache.history = cache.history + keep
        n = int(lens[0])
        if layers is not None:
            layers.extend(h.reshape(-1, h.size(-1))[:n] for h in blocks)
        return x.reshape(-1, x.size(-1))[:n], new_cache

    def forward_chunks(self, windows: torch.Tensor, lengths: torch.Tensor,
                       history: torch.Tensor, att_cache: torch.Tensor, conv_cache: torch.Tensor,
                       chunk_size: int, left_context_size: int, right_context_size: int = 0):
        """Encode one chunk for each of B streams in one forward, each with its own caches
        (live recognition of many calls; the streaming ONNX graph).

        Args:
            windows: (B, 8C + 7, F) fbank frames of each stream's next chunk.
            lengths: (B,) real encoder frames in each chunk (C, fewer in a stream's last one).
            history: (B,) real frames behind each stream's caches (0 for a fresh stream).
            att_cache: (N, B, 2, L, D) keys/values of each stream's last L frames, per layer.
            conv_cache: (N, B, lorder, D) each stream's last convolution inputs, per layer.
        Returns:
            (B, C, D) output (zero after each length) and the (N, B, 2, L, D), (N, B, lorder, D)
            caches for each stream's next chunk. With R = 0 this is exactly what a chunked pass
            over each stream's whole audio gives; with R > 0 the right context is empty.
        """
        layout = ChunkLayout.single_chunks(lengths, history, chunk_size, left_context_size,
                                           right_context_size, self.lorder)
        x, cache = self._encode_chunks(windows, layout, EncoderCache(att_cache, conv_cache),
                                       chunk_size)
        return x, cache.att, cache.conv

    def empty_cache(self, left: int, dtype=torch.float32, device="cpu") -> EncoderCache:
        n, d = self.num_blocks, self.output_size
        return EncoderCache(torch.zeros(n, 2, left, d, dtype=dtype, device=device),
                            torch.zeros(n, self.lorder, d, dtype=dtype, device=device), 0)

    def _frontend(self, windows: torch.Tensor) -> torch.Tensor:
        """(G, S, F) fbank windows → (G, C, D), in slices of bounded memory."""
        if self.global_cmvn is not None:
            windows = self.global_cmvn(windows)
        g, s, f = windows.shape
        per_window = self.output_size * (s // 2) * (f // 2)  # first conv's output size
        step = max(1, MAX_FRONTEND_ELEMENTS // per_window)
        if g <= step:
            return self.embed(windows)
        return torch.cat([self.embed(windows[i:i + step]) for i in range(0, g, step)])

    def _encode_chunks(self, windows, layout: ChunkLayout, cache: Optional[EncoderCache] = None,
                       cache_at: Optional[int] = None, layers: Optional[list] = None):
        layout.to(windows.device)
        x = self.embed_dropout(self._frontend(windows))  # (G, C, D)
        pos = relative_position_table(layout.chunk, layout.left, layout.right,
                                      self.output_size).to(x.device)
        att, conv = [], []
        for i, layer in enumerate(self.encoders):
            x, a, c = layer(x, pos, layout,
                            cache.att[i] if cache is not None else None,
                            cache.conv[i] if cache is not None else None, cache_at)
            att.append(a)
            conv.append(c)
            if layers is not None:
                layers.append(x)
        x = self.after_norm(x)
        if cache_at is None:
            return x, None
        return x, EncoderCache(torch.stack(att), torch.stack(conv))
