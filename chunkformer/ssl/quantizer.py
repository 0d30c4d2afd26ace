"""BEST-RQ targets: a frozen random projection of stacked, normalised fbank frames, quantised
against frozen random codebooks (Chiu et al., 2022, "Self-supervised learning with
random-projection quantizer for speech recognition").

Encoder frame t of the 8x subsampling front end sees fbank frames [8t, 8t + 15); its target is
computed from the 8 frames in the middle of that window, [8t + 3, 8t + 11), each utterance
normalised by its own per-bin mean and standard deviation. Every utterance is quantised on its
own, so a target depends only on that utterance's features and the seed: never on the batch
it lands in or on padding.
"""
from typing import List

import torch
from torch import nn
from torch.nn import functional as F

from chunkformer.encoder.subsampling import subsampled_length

STACK = 8  # fbank frames per encoder frame (the subsampling rate)
WINDOW_START = 3  # offset of the stacked frames inside an encoder frame's 15-frame window


def normalize_utterance(feats: torch.Tensor) -> torch.Tensor:
    """(T, F) fbank → (T, F) with zero mean and unit variance per bin over the utterance."""
    mean = feats.mean(dim=0, keepdim=True)
    std = feats.std(dim=0, unbiased=False, keepdim=True).clamp_min(1e-5)
    return (feats - mean) / std


def stack_frames(feats: torch.Tensor, pooling: str = "stack") -> torch.Tensor:
    """(T, F) normalised fbank → for encoder frame t the frames [8t + 3, 8t + 11), T' =
    ``subsampled_length(T)``: concatenated (``stack``, (T', 8·F), the paper's targets) or
    averaged (``mean``, (T', F): the spectral envelope of the 80 ms, without its frame-to-frame
    detail, which a small encoder cannot predict from the context)."""
    frames = max(0, int(subsampled_length(feats.size(0))))
    start = WINDOW_START
    window = feats[start:start + STACK * frames].reshape(frames, STACK, feats.size(1))
    if pooling == "mean":
        return window.mean(dim=1)
    if pooling != "stack":
        raise ValueError(f"target pooling {pooling!r}: stack or mean")
    return window.reshape(frames, STACK * feats.size(1))


class RandomProjectionQuantizer(nn.Module):
    """Frozen random projection + codebooks → one target id per encoder frame and codebook.

    Args:
        input_dim: fbank bins F.
        num_codebooks: K independent projections and codebooks (one prediction head each).
        codebook_size: V entries per codebook.
        codebook_dim: E, the projected dimension.
        seed: the projections and codebooks are drawn from this seed alone (buffers, saved with
            the model, never trained).
        pooling: ``stack`` or ``mean`` of the 8 frames (:func:`stack_frames`).
    """

    def __init__(self, input_dim: int = 80, num_codebooks: int = 1, codebook_size: int = 8192,
                 codebook_dim: int = 16, seed: int = 0, pooling: str = "stack"):
        super().__init__()
        if pooling not in ("stack", "mean"):
            raise ValueError(f"target pooling {pooling!r}: stack or mean")
        self.pooling = pooling
        g = torch.Generator().manual_seed(seed)
        fan_in = STACK * input_dim if pooling == "stack" else input_dim
        std = (2.0 / (fan_in + codebook_dim)) ** 0.5  # Xavier normal
        projection = torch.randn(num_codebooks, fan_in, codebook_dim, generator=g) * std
        codebooks = F.normalize(torch.randn(num_codebooks, codebook_size, codebook_dim,
                                            generator=g), dim=-1)
        self.register_buffer("projection", projection)
        self.register_buffer("codebooks", codebooks)

    @property
    def num_codebooks(self) -> int:
        return self.codebooks.size(0)

    @property
    def codebook_size(self) -> int:
        return self.codebooks.size(1)

    @torch.no_grad()
    def quantize(self, feats: torch.Tensor) -> torch.Tensor:
        """One utterance's (T, F) fbank → (T', K) int64 codebook ids (nearest entry by cosine,
        the projected vector and the entries being unit length)."""
        stacked = stack_frames(normalize_utterance(feats.float()), self.pooling)  # (T', 8F|F)
        z = F.normalize(torch.einsum("td,kde->kte", stacked, self.projection), dim=-1)
        return torch.einsum("kte,kve->ktv", z, self.codebooks).argmax(dim=-1).t()

    def forward(self, feats: torch.Tensor, feats_lens: torch.Tensor) -> torch.Tensor:
        """(B, T, F) padded fbank + (B,) lengths → (B, T', K) targets, T' the longest
        utterance's encoder length; positions past an utterance's end hold -1."""
        per_utt: List[torch.Tensor] = [self.quantize(f[:n]) for f, n in
                                       zip(feats, feats_lens.tolist())]
        frames = max([t.size(0) for t in per_utt], default=0)
        out = feats.new_full((feats.size(0), frames, self.num_codebooks), -1, dtype=torch.long)
        for i, t in enumerate(per_utt):
            out[i, :t.size(0)] = t
        return out
