"""Relative-position multi-head self-attention over overlapping chunk windows (spec §7.4).

Transformer-XL scoring: ``scores = ((q + u) kᵀ + rel_shift((q + v) pᵀ)) / sqrt(dk)``. Each chunk
of C queries attends to a window of L + C + R keys taken from the keys of all chunks laid end to
end (the overlapping-chunk transformation), with L cached (or zero) frames in front and R zero
frames behind; the chunk layout says which window positions are real frames. Masked keys get
zero weight; a row with no real key yields zeros instead of NaN.
"""
import math
from typing import Optional

import torch
from torch import nn

# Largest attention-score tensor (elements) materialised at once; chunks are processed in
# groups below it so that hours of audio attend in bounded memory.
MAX_SCORE_ELEMENTS = 1 << 23


def rel_shift(bd: torch.Tensor, window: int) -> torch.Tensor:
    """(…, C, 2C+L+R-1) position scores → (…, C, L+C+R) with out[i, j] = bd[i, C-1-i+j],
    which pairs query i (window position L+i) with key j through PE(L + i - j)."""
    c, p = bd.shape[-2:]
    flat = bd.flatten(-2).narrow(-1, c - 1, c * (p - 1))
    return flat.unflatten(-1, (c, p - 1))[..., :window]


class ChunkRelPositionAttention(nn.Module):
    """Key names match released checkpoints (``linear_{q,k,v,out,pos}``, ``pos_bias_{u,v}``)."""

    def __init__(self, n_head: int = 8, n_feat: int = 512, dropout_rate: float = 0.1):
        super().__init__()
        assert n_feat % n_head == 0, "attention dim must be divisible by the number of heads"
        self.h, self.d_k = n_head, n_feat // n_head
        self.linear_q = nn.Linear(n_feat, n_feat)
        self.linear_k = nn.Linear(n_feat, n_feat)
        self.linear_v = nn.Linear(n_feat, n_feat)
        self.linear_out = nn.Linear(n_feat, n_feat)
        self.linear_pos = nn.Linear(n_feat, n_feat, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(n_head, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.zeros(n_head, self.d_k))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, x, pos, layout, cache: Optional[torch.Tensor] = None,
                cache_at: Optional[int] = None):
        """Attend every chunk to its window.

        Args:
            x: (G, C, D) chunk queries (and keys/values).
            pos: (2C+L+R-1, D) relative position table for (C, L, R).
            layout: ChunkLayout with key_valid (G, L+C+R).
            cache: (2, L, D) keys and values of the L frames before frame 0, or None (zeros);
                or (G, 2, L, D), one per chunk, when every chunk is a stream of its own
                (``ChunkLayout.single_chunks``).
            cache_at: if given, also return the (2, L, D) keys/values of the L frames that
                precede frame ``cache_at`` (in cache ++ chunks order), the next segment's cache
                ((G, 2, L, D), those before each chunk's frame ``cache_at``, with per-chunk caches).
        Returns:
            (G, C, D) output, and the new cache (or None).
        """
        g, c, d = x.shape
        left, right = layout.left, layout.right
        window = left + c + right
        q = self.linear_q(x).view(g, c, self.h, self.d_k)
        kv = torch.stack((self.linear_k(x), self.linear_v(x)))  # (2, G, C, D)
        if cache is not None and cache.dim() == 4:  # one stream per chunk: windows side by side
            windows = torch.cat((cache.transpose(0, 1), kv, kv.new_zeros(2, g, right, d)), 2)
            new_cache = windows[:, :, cache_at:cache_at + left].transpose(0, 1) \
                if cache_at is not None else None
            windows = windows.transpose(2, 3)  # (2, G, D, W)
        else:  # chunks laid end to end, each window a view of the sequence
            kv = kv.view(2, g * c, d)
            front = cache if cache is not None else kv.new_zeros(2, left, d)
            seq = torch.cat((front, kv, kv.new_zeros(2, right, d)), dim=1)  # (2, L+GC+R, D)
            # a copy, not a view: a view would keep every layer's whole sequence alive
            new_cache = seq[:, cache_at:cache_at + left].clone() if cache_at is not None else None
            windows = None

        p = self.linear_pos(pos.to(x.dtype)).view(-1, self.h, self.d_k).permute(1, 2, 0)
        q_u = (q + self.pos_bias_u).transpose(1, 2)  # (G, H, C, dk)
        q_v = (q + self.pos_bias_v).transpose(1, 2)
        group = max(1, MAX_SCORE_ELEMENTS // (self.h * c * (window + p.size(-1))))
        out = []
        for g0 in range(0, g, group):
            g1 = min(g, g0 + group)
            win = windows[:, g0:g1] if windows is not None else \
                seq[:, g0 * c:(g1 - 1) * c + window].unfold(1, window, c)  # (2, n, D, W)
            win = win.reshape(2, g1 - g0, self.h, self.d_k, window)
            ac = torch.matmul(q_u[g0:g1], win[0])  # (n, H, C, W)
            bd = rel_shift(torch.matmul(q_v[g0:g1], p), window)
            scores = (ac + bd) / math.sqrt(self.d_k)
            masked = ~layout.key_valid[g0:g1, None, None, :]
            scores = scores.masked_fill(masked, float("-inf"))
            attn = torch.softmax(scores.float(), dim=-1).to(x.dtype).masked_fill(masked, 0.0)
            ctx = torch.matmul(self.dropout(attn), win[1].transpose(-1, -2))  # (n, H, C, dk)
            out.append(ctx.transpose(1, 2).reshape(g1 - g0, c, d))
        return self.linear_out(torch.cat(out) if len(out) > 1 else out[0]), new_cache
