"""8x depthwise-striding convolutional front end (spec/model.md §7.1).

Input fbank (B, T, F) is treated as a one-channel image (time = height, frequency = width):
Conv2d(1→D, 3, stride 2) · ReLU · [depthwise Conv2d(3, stride 2) · pointwise Conv2d(1) · ReLU] × 2,
then the (D × F') channel-major flattening goes through a Linear to D and is scaled by sqrt(D).
No padding anywhere: output frame t depends on input frames [8t, 8t + 14] only, which is what
makes chunked computation of the front end exact.
"""
import math

import torch
from torch import nn


def subsampled_length(num_frames):
    """Number of output frames for ``num_frames`` fbank frames: floor((T - 7) / 8), as the
    released code computes it (three stages of ``floor((n - 3) / 2) + 1``).

    Works on ints and on integer tensors; very short inputs give 0 or negative values.
    """
    if isinstance(num_frames, torch.Tensor):
        return torch.div(num_frames - 7, 8, rounding_mode="floor")
    return (num_frames - 7) // 8


def _stage_size(n):
    return (n - 3) // 2 + 1


class DepthwiseStridingSubsampling(nn.Module):
    """(B, T, idim) fbank → (B, (T - 7) // 8, odim) embeddings. Key names match released
    checkpoints: ``conv.{0,2,3,5,6}`` and ``out``."""

    receptive_field = 15  # input frames seen by one output frame
    stride = 8

    def __init__(self, idim: int = 80, odim: int = 512):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, odim, 3, 2),
            nn.ReLU(),
            nn.Conv2d(odim, odim, 3, 2, groups=odim),
            nn.Conv2d(odim, odim, 1),
            nn.ReLU(),
            nn.Conv2d(odim, odim, 3, 2, groups=odim),
            nn.Conv2d(odim, odim, 1),
            nn.ReLU(),
        )
        freq = _stage_size(_stage_size(_stage_size(idim)))
        self.out = nn.Linear(odim * freq, odim)
        self.scale = math.sqrt(odim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x.unsqueeze(1))  # (B, D, T', F')
        b, d, t, f = x.shape
        x = x.transpose(1, 2).reshape(b, t, d * f)  # channel-major flatten, (B, T', D*F')
        return self.out(x) * self.scale  # (B, T', D)
