"""Utterance-level pooling of encoder frames that ignores padding.

Both poolings return the pooled vector and the weight each frame got (B, T'), so that a report
can show which parts of a call a decision rests on. Padded frames get weight 0, and an
utterance pools to the same vector alone or in a padded batch.
"""
import torch
from torch import nn


def valid_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """(B,) lengths → (B, frames) bool, True on real frames."""
    return torch.arange(frames, device=lengths.device) < lengths[:, None]


class MaskedMeanPooling(nn.Module):
    """(B, T', D) frames + (B,) lengths → (B, D) mean over each utterance's frames."""

    def __init__(self, input_dim: int):
        super().__init__()
        self.output_dim = input_dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        mask = valid_mask(lengths, x.size(1)).to(x.dtype)
        weights = mask / mask.sum(dim=1, keepdim=True).clamp_min(1)
        return torch.einsum("bt,btd->bd", weights, x), weights


class AttentiveStatsPooling(nn.Module):
    """Attentive statistics pooling (Okabe et al., 2018): a small MLP scores every frame, the
    scores are soft-maxed over the utterance's real frames, and the weighted mean and standard
    deviation are concatenated → (B, 2D)."""

    def __init__(self, input_dim: int, attention_dim: int = 128):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(input_dim, attention_dim), nn.Tanh(),
                                   nn.Linear(attention_dim, 1))
        self.output_dim = 2 * input_dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        mask = valid_mask(lengths, x.size(1))
        scores = self.score(x).squeeze(-1).float().masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1).to(x.dtype)  # (B, T')
        mean = torch.einsum("bt,btd->bd", weights, x)
        var = torch.einsum("bt,btd->bd", weights, x * x) - mean * mean
        return torch.cat([mean, var.clamp_min(1e-6).sqrt()], dim=-1), weights


POOLINGS = {"mean": MaskedMeanPooling, "attentive": AttentiveStatsPooling}


def build_pooling(kind: str, input_dim: int) -> nn.Module:
    if kind not in POOLINGS:
        raise ValueError(f"pooling {kind!r} is not one of {', '.join(POOLINGS)}")
    return POOLINGS[kind](input_dim)
