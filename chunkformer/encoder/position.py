"""Relative sinusoidal positions for chunk windows (spec/model.md §7.2).

For relative distance p (query index minus key index): PE(p)[2i] = sin(p w_i),
PE(p)[2i+1] = cos(p w_i), w_i = exp(-(2i) ln(10000) / D), in float32 exactly as the released
code computes it. A window of C queries with L left and R right keys uses the rows
PE(C+L-1), PE(C+L-2), ..., PE(-(C+R-1)) (2C+L+R-1 rows, descending). Unlike the released code
the table is built on demand, so full-context input is not limited to 5000 frames.
"""
import math

import torch


def relative_position_table(chunk: int, left: int, right: int, dim: int) -> torch.Tensor:
    """Rows PE(chunk+left-1) … PE(-(chunk+right-1)), shape (2*chunk+left+right-1, dim)."""
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * -(math.log(10000.0) / dim))
    pos = torch.arange(chunk + left - 1, -(chunk + right), -1, dtype=torch.float32)
    angle = pos.unsqueeze(1) * freq  # (P, dim / 2)
    table = torch.empty(pos.numel(), dim, dtype=torch.float32)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle)
    return table
