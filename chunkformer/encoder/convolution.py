"""Chunk-aware Conformer convolution module (spec §7.5, masked-batch semantics of §8.3).

pointwise_conv1 (D → 2D) → GLU → depthwise conv (kernel k, no built-in padding) → LayerNorm →
SiLU → pointwise_conv2. The depthwise conv of chunk c reads ``lorder = k // 2`` frames on each
side from the GLU outputs of all chunks laid end to end, with cached (or zero) frames in front;
frames that are not real frames of the same utterance — or lie further right than the attention
right context R — are zeroed after the GLU. This is the semantics used for training and for every
inference path alike, so a model sees at inference exactly what it was trained on.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class ChunkConvolution(nn.Module):
    """Key names match released checkpoints (``pointwise_conv1``, ``depthwise_conv``, ``norm``,
    ``pointwise_conv2``)."""

    def __init__(self, channels: int = 512, kernel_size: int = 15, norm: str = "layer_norm",
                 norm_eps: float = 1e-5):
        super().__init__()
        assert kernel_size % 2 == 1, "cnn_module_kernel must be odd"
        if norm != "layer_norm":
            raise ValueError(f"cnn_module_norm={norm!r} is not supported (only layer_norm)")
        self.lorder = kernel_size // 2
        self.pointwise_conv1 = nn.Conv1d(channels, 2 * channels, 1)
        self.depthwise_conv = nn.Conv1d(channels, channels, kernel_size, groups=channels)
        self.norm = nn.LayerNorm(channels, eps=norm_eps)
        self.pointwise_conv2 = nn.Conv1d(channels, channels, 1)

    def forward(self, x, layout, cache: Optional[torch.Tensor] = None,
                cache_at: Optional[int] = None):
        """Args:
            x: (G, C, D) chunk frames.
            layout: ChunkLayout with conv_valid (G, C + 2 lorder) and frame_valid (G, C).
            cache: (lorder, D) GLU outputs of the frames before frame 0, or None (zeros); or
                (G, lorder, D), one per chunk, when every chunk is a stream of its own.
            cache_at: if given, also return the lorder GLU frames preceding ``cache_at`` (of
                each chunk, with per-chunk caches).
        Returns:
            (G, C, D) output (zero at invalid frames) and the new cache (or None).
        """
        g, c, d = x.shape
        p = self.lorder
        h = F.linear(x, self.pointwise_conv1.weight.squeeze(-1), self.pointwise_conv1.bias)
        h = F.glu(h, dim=-1)  # (G, C, D)
        if cache is not None and cache.dim() == 3:  # one stream per chunk
            win = torch.cat((cache, h, h.new_zeros(g, p, d)), 1)  # (G, C + 2p, D)
            new_cache = win[:, cache_at:cache_at + p] if cache_at is not None else None
            win = win.transpose(1, 2)
        else:
            front = cache if cache is not None else h.new_zeros(p, d)
            seq = torch.cat((front, h.reshape(g * c, d), h.new_zeros(p, d)))  # (p + GC + p, D)
            new_cache = seq[cache_at:cache_at + p].clone() if cache_at is not None else None
            win = seq.unfold(0, c + 2 * p, c)  # (G, D, C + 2p)
        win = win.masked_fill(~layout.conv_valid.unsqueeze(1), 0.0)
        y = self.depthwise_conv(win).transpose(1, 2)  # (G, C, D)
        y = F.silu(self.norm(y))
        y = F.linear(y, self.pointwise_conv2.weight.squeeze(-1), self.pointwise_conv2.bias)
        return y.masked_fill(~layout.frame_valid.unsqueeze(-1), 0.0), new_cache
