"""One ChunkFormer block: macaron Conformer, pre-norm (spec §7.3).

    x = x + ½ FFN_mac(LN(x));  x = x + MHSA(LN(x));  x = x + Conv(LN(x));  x = x + ½ FFN(LN(x))
    x = LN_final(x)
"""
from typing import Optional

import torch
from torch import nn

from chunkformer.encoder.attention import ChunkRelPositionAttention
from chunkformer.encoder.convolution import ChunkConvolution

ACTIVATIONS = {"swish": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU}

# Largest feed-forward hidden activation (elements) computed at once: the FFN runs over groups
# of chunks, so hours of audio never hold a (frames × linear_units) matrix in inference.
MAX_HIDDEN_ELEMENTS = 1 << 23


def per_chunk_groups(fn, x: torch.Tensor, width: int) -> torch.Tensor:
    """Apply the frame-wise ``fn`` to (G, C, D) ``x`` in groups of chunks whose (n, C, width)
    intermediate stays under MAX_HIDDEN_ELEMENTS; same result as ``fn(x)``."""
    step = max(1, MAX_HIDDEN_ELEMENTS // (x.size(1) * width))
    if x.size(0) <= step:
        return fn(x)
    return torch.cat([fn(x[i:i + step]) for i in range(0, x.size(0), step)])


class FeedForward(nn.Module):
    """w_2(act(w_1(x))), key names ``w_1`` / ``w_2``."""

    def __init__(self, dim: int, hidden: int, dropout_rate: float, activation: str = "swish"):
        super().__init__()
        self.w_1 = nn.Linear(dim, hidden)
        self.activation = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout_rate)
        self.w_2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.w_2(self.dropout(self.activation(self.w_1(x))))


class ChunkFormerLayer(nn.Module):
    def __init__(self, dim: int = 512, heads: int = 8, linear_units: int = 2048,
                 kernel_size: int = 15, dropout_rate: float = 0.1,
                 attention_dropout_rate: float = 0.1, activation: str = "swish",
                 cnn_module_norm: str = "layer_norm", norm_eps: float = 1e-5):
        super().__init__()
        self.feed_forward_macaron = FeedForward(dim, linear_units, dropout_rate, activation)
        self.self_attn = ChunkRelPositionAttention(heads, dim, attention_dropout_rate)
        self.conv_module = ChunkConvolution(dim, kernel_size, cnn_module_norm, norm_eps)
        self.feed_forward = FeedForward(dim, linear_units, dropout_rate, activation)
        for name in ("norm_ff_macaron", "norm_mha", "norm_conv", "norm_ff", "norm_final"):
            setattr(self, name, nn.LayerNorm(dim, eps=norm_eps))
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, x, pos, layout, att_cache: Optional[torch.Tensor] = None,
                conv_cache: Optional[torch.Tensor] = None, cache_at: Optional[int] = None):
        """(G, C, D) → (G, C, D); with ``cache_at`` also the layer's next (att, conv) caches."""
        hidden = self.feed_forward.w_1.out_features
        x = per_chunk_groups(self._ff_macaron, x, hidden)
        y, att_cache = self.self_attn(self.norm_mha(x), pos, layout, att_cache, cache_at)
        x = x + self.dropout(y)
        y, conv_cache = self.conv_module(self.norm_conv(x), layout, conv_cache, cache_at)
        x = x + self.dropout(y)
        return per_chunk_groups(self._ff_final, x, hidden), att_cache, conv_cache

    def _ff_macaron(self, x):
        return x + 0.5 * self.dropout(self.feed_forward_macaron(self.norm_ff_macaron(x)))

    def _ff_final(self, x):
        return self.norm_final(x + 0.5 * self.dropout(self.feed_forward(self.norm_ff(x))))
