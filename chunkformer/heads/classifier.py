"""Heads on pooled encoder frames: an utterance classifier (intent, emotion, call outcome) and a
speaker-embedding head trained with additive angular margin softmax (AAM, ArcFace)."""
from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from chunkformer.heads.pooling import build_pooling


class UtteranceClassifier(nn.Module):
    """(B, T', D) frames → (B, C) logits over ``classes``, through masked mean or attentive
    statistics pooling and an optional hidden layer. ``class_weights`` (one per class) weigh
    each utterance's cross-entropy by its class, so that a rare outcome is not learnt as the
    majority class (``collect_classes`` turns ``class_weights: balanced`` into inverse
    frequencies of the training list)."""

    def __init__(self, input_dim: int, classes: Sequence[str], pooling: str = "mean",
                 hidden_dim: int = 0, dropout: float = 0.0,
                 class_weights: Optional[Sequence[float]] = None):
        super().__init__()
        self.classes = list(classes)
        if isinstance(class_weights, str):  # collect_classes resolves "balanced" from the data
            raise ValueError(f"class_weights: {class_weights!r} is neither 'balanced' (resolved "
                             "from the training list) nor one number per class")
        if class_weights is not None and len(class_weights) != len(self.classes):
            raise ValueError(f"class_weights: {len(class_weights)} values for "
                             f"{len(self.classes)} classes")
        self.register_buffer("class_weights", None if class_weights is None else
                             torch.tensor(class_weights, dtype=torch.float), persistent=False)
        self.pooling = build_pooling(pooling, input_dim)
        dim = self.pooling.output_dim
        layers = [nn.Dropout(dropout)]
        if hidden_dim:
            layers += [nn.Linear(dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout)]
            dim = hidden_dim
        self.mlp = nn.Sequential(*layers)
        self.out = nn.Linear(dim, len(self.classes))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        """→ (logits (B, C), frame weights (B, T'))."""
        pooled, weights = self.pooling(x, lengths)
        return self.out(self.mlp(pooled)), weights

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-utterance cross-entropy (B,), times its class's weight; label -1 (not
        annotated) gives 0."""
        return F.cross_entropy(logits.float(), labels.clamp_min(0), weight=self.class_weights,
                               reduction="none") * (labels >= 0)


class SpeakerEmbeddingHead(nn.Module):
    """Pooled frames → a speaker embedding; trained as AAM softmax over the training speakers
    (cos(θ_y + m) for the true speaker, scaled by s), scored by cosine at test time.

    Args:
        input_dim: D of the encoder frames.
        classes: training speaker ids.
        embed_dim: size of the embedding.
        margin, scale: AAM's m (radians) and s.
    """

    def __init__(self, input_dim: int, classes: Sequence[str], embed_dim: int = 128,
                 pooling: str = "attentive", margin: float = 0.2, scale: float = 30.0):
        super().__init__()
        self.classes = list(classes)
        self.pooling = build_pooling(pooling, input_dim)
        self.embedding = nn.Linear(self.pooling.output_dim, embed_dim)
        self.centers = nn.Parameter(torch.randn(len(self.classes), embed_dim) * 0.01)
        self.margin, self.scale = margin, scale

    def embed(self, x: torch.Tensor, lengths: torch.Tensor):
        """→ (embeddings (B, E), frame weights (B, T'))."""
        pooled, weights = self.pooling(x, lengths)
        return self.embedding(pooled), weights

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        """→ (cosine to each training speaker (B, C), frame weights)."""
        emb, weights = self.embed(x, lengths)
        return F.normalize(emb.float(), dim=-1) @ F.normalize(self.centers.float(), dim=-1).t(), \
            weights

    def loss(self, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """AAM-softmax cross-entropy per utterance (B,); label -1 gives 0."""
        target = labels.clamp_min(0)
        theta = torch.acos(cosine.clamp(-1 + 1e-6, 1 - 1e-6))
        margin = F.one_hot(target, cosine.size(1)).to(cosine.dtype) * self.margin
        logits = self.scale * torch.cos(theta + margin)
        return F.cross_entropy(logits, target, reduction="none") * (labels >= 0)


def cosine_score(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of paired embeddings (N, E), (N, E) → (N,)."""
    return F.cosine_similarity(a.float(), b.float(), dim=-1)
