"""Global CMVN: statistics files and the module that applies them (spec §4).

JSON (WeNet) format: ``mean_stat`` (sums of x), ``var_stat`` (sums of x²), ``frame_num``. Kaldi
text format (``is_json_cmvn: false``): a 2 × (F + 1) matrix, row 0 sums and count, row 1 sums of
squares. mean = sum / n; var = sumsq / n - mean², floored at 1e-20; istd = 1 / sqrt(var); all in
float64, stored as float32.
"""
import json

import numpy as np
import torch
from torch import nn


def stats_to_mean_istd(mean_stat, var_stat, frame_num):
    """(sums, sums of squares, count) → (mean, istd) float32 arrays of shape (F,)."""
    mean = np.asarray(mean_stat, dtype=np.float64) / frame_num
    var = np.asarray(var_stat, dtype=np.float64) / frame_num - mean * mean
    istd = 1.0 / np.sqrt(np.maximum(var, 1.0e-20))
    return mean.astype(np.float32), istd.astype(np.float32)


def read_cmvn(path, is_json: bool = True):
    """Read a CMVN statistics file → (mean, istd) float32 arrays."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if is_json:
        stats = json.loads(text)
        return stats_to_mean_istd(stats["mean_stat"], stats["var_stat"], stats["frame_num"])
    numbers = [float(v) for v in text.replace("[", " ").replace("]", " ").split()]
    dim = len(numbers) // 2 - 1
    sums, squares = numbers[:dim + 1], numbers[dim + 1:]
    return stats_to_mean_istd(sums[:dim], squares[:dim], sums[dim])


def write_cmvn(path, mean_stat, var_stat, frame_num):
    """Write statistics in the JSON format the released folders use."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"mean_stat": [float(v) for v in mean_stat],
                   "var_stat": [float(v) for v in var_stat],
                   "frame_num": int(frame_num)}, f)


class GlobalCMVN(nn.Module):
    """x → (x - mean) * istd over the last axis; buffers ``mean`` / ``istd`` (F,)."""

    def __init__(self, mean: torch.Tensor, istd: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("istd", torch.as_tensor(istd, dtype=torch.float32))

    def forward(self, x):
        return (x - self.mean) * self.istd
