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
        x = x + 0.5 * self.dropout(self.feed_forward_macaron(self.norm_ff_macaron(x)))
        y, att_cache = self.self_attn(self.norm_mha(x), pos, layout, att_cache, cache_at)
        x = x + self.dropout(y)
        y, conv_cache = self.conv_module(self.norm_conv(x), layout, conv_cache, cache_at)
        x = x + self.dropout(y)
        x = x + 0.5 * self.dropout(self.feed_forward(self.norm_ff(x)))
        return self.norm_final(x), att_cache, conv_cache
