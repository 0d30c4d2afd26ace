"""Span masking of the input features for masked prediction (BEST-RQ, wav2vec 2.0 style).

Masks are drawn per encoder frame (80 ms, the 8x subsampling rate): a frame starts a span of
``span`` frames with probability ``start_prob``; spans may overlap and are cut at the end of
the utterance; an utterance that drew no start gets one at a uniform position, so every
utterance has masked frames to learn from. Away from the start of the utterance a frame is
masked with probability ``1 - (1 - start_prob) ** span``.

The paper's setting is given per 10 ms input frame (``mask_prob`` 0.01, 400 ms spans): every
input frame starts a span with that probability, so an 8-frame encoder frame starts one with
``1 - (1 - mask_prob) ** 8`` (:func:`encoder_start_prob`), and ~33% of the frames are masked.

Masking an encoder frame hides its whole receptive field in the subsampling front end, fbank
frames [8t, 8t + 15): they are replaced by noise around the utterance's mean (standard
deviation ``noise_std`` times the utterance's own, per bin), so the encoder cannot read the
target from what it is given.
"""
from typing import Optional

import torch

from chunkformer.ssl.quantizer import STACK

RECEPTIVE_FIELD = 15  # fbank frames one encoder frame sees through the subsampling convs


def encoder_start_prob(mask_prob: float) -> float:
    """Per-input-frame span-start probability → per-encoder-frame one."""
    if not 0.0 <= mask_prob < 1.0:
        raise ValueError(f"mask_prob {mask_prob} must lie in [0, 1)")
    return 1.0 - (1.0 - mask_prob) ** STACK


def span_frames(span_ms: float) -> int:
    """A span in milliseconds → encoder frames (80 ms each), at least 1."""
    return max(1, int(round(span_ms / (STACK * 10))))


def expected_masked_fraction(start_prob: float, span: int) -> float:
    """Probability that a frame at least ``span - 1`` frames into the utterance is masked."""
    return 1.0 - (1.0 - start_prob) ** span


def sample_span_mask(lengths: torch.Tensor, start_prob: float, span: int,
                     generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """(B,) encoder frames per utterance → (B, T') bool mask (True = masked), T' = max length.

    Random numbers come from ``generator`` (default: torch's global CPU generator, which the
    trainer saves and restores, so a resumed run draws the same masks)."""
    lengths = lengths.cpu()
    frames = int(lengths.max()) if lengths.numel() else 0
    valid = torch.arange(frames) < lengths[:, None]
    starts = (torch.rand(lengths.numel(), frames, generator=generator) < start_prob) & valid
    fallback = (torch.rand(lengths.numel(), generator=generator) * lengths).long()
    none = ~starts.any(dim=1) & (lengths > 0)
    starts[none.nonzero().squeeze(1), fallback[none]] = True
    mask = starts.clone()
    for k in range(1, span):  # frame t is masked when a span started at t - k, k < span
        mask[:, k:] |= starts[:, :-k]
    return mask & valid


def mask_features(feats: torch.Tensor, feats_lens: torch.Tensor, mask: torch.Tensor,
                  noise_std: float = 0.1, generator: Optional[torch.Generator] = None
                  ) -> torch.Tensor:
    """Replace the receptive field of every masked encoder frame by noise.

    Args:
        feats: (B, T, F) padded fbank; feats_lens: (B,).
        mask: (B, T') encoder-frame mask from :func:`sample_span_mask`.
    Returns:
        (B, T, F) features, a new tensor; frames outside masked fields are unchanged.
    """
    b, t, f = feats.shape
    hidden = torch.zeros(b, t + RECEPTIVE_FIELD, dtype=torch.bool)
    rows, cols = mask.cpu().nonzero(as_tuple=True)
    for k in range(RECEPTIVE_FIELD):
        hidden[rows, STACK * cols + k] = True
    hidden = hidden[:, :t] & (torch.arange(t) < feats_lens.cpu()[:, None])
    valid = (torch.arange(t) < feats_lens.cpu()[:, None]).to(feats.device)[..., None]
    n = feats_lens.to(feats.device).clamp_min(1)[:, None, None].to(feats.dtype)
    mean = (feats * valid).sum(dim=1, keepdim=True) / n
    std = (((feats - mean) ** 2 * valid).sum(dim=1, keepdim=True) / n).sqrt()
    noise = torch.randn(b, t, f, generator=generator).to(feats.device, feats.dtype)
    return torch.where(hidden.to(feats.device)[..., None], mean + noise_std * std * noise, feats)


