"""BEST-RQ masked prediction on the ChunkFormer encoder.

    fbank (B, T, 80) ──► quantizer (unmasked, frozen) ──────────► targets (B, T', K)
        └─► span mask ─► encoder (masked batch, context C/L/R) ─► K heads ─► logits (B, T', K, V)
    loss = cross-entropy on the masked frames only

The encoder is the same module the ASR model uses (same config schema, same masked batch and
chunked contexts), so pretraining runs in the contexts that fine-tuning and inference use and
its ``encoder.*`` weights load into an ASR model as they are. A pretrained model is saved as a
model folder in the released layout (``config.yaml`` with ``model: bestrq`` and ``ssl_conf``,
``pytorch_model.bin``, ``global_cmvn``).
"""
from pathlib import Path
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from chunkformer.config import ConfigError, check_keys, encoder_kwargs, load_yaml
from chunkformer.encoder.cmvn import GlobalCMVN
from chunkformer.encoder.encoder import ChunkFormerEncoder
from chunkformer.pretrained import find_weights, read_folder_cmvn
from chunkformer.ssl.masking import (encoder_start_prob, mask_features, sample_span_mask,
                                     span_frames)
from chunkformer.ssl.quantizer import RandomProjectionQuantizer

MODEL_TYPE = "bestrq"


class BestRQModel(nn.Module):
    """Encoder + one linear prediction head per codebook + the frozen quantizer.

    Args:
        encoder: a :class:`ChunkFormerEncoder`.
        config: the model section (written as the folder's ``config.yaml``).
        cmvn_stats: the ``global_cmvn`` file's bytes, kept to write it back.
        num_codebooks, codebook_size, codebook_dim, seed: the quantizer's.
        target_pooling: ``stack`` (the paper) or ``mean`` of the 8 fbank frames of a target.
        mask_prob: span-start probability per 10 ms input frame (paper: 0.01).
        mask_span_ms: span length (paper: 400 ms).
        noise_std: masked frames become noise of this many per-utterance standard deviations.
    """

    stat_names = ("loss", "accuracy", "perplexity", "masked_fraction")

    def __init__(self, encoder: ChunkFormerEncoder, config: Optional[dict] = None,
                 cmvn_stats: Optional[bytes] = None, num_codebooks: int = 1,
                 codebook_size: int = 8192, codebook_dim: int = 16, seed: int = 0,
                 mask_prob: float = 0.01, mask_span_ms: float = 400.0, noise_std: float = 0.1,
                 target_pooling: str = "stack"):
        super().__init__()
        self.encoder = encoder
        self.config = config or {}
        self.cmvn_stats = cmvn_stats
        self.quantizer = RandomProjectionQuantizer(int(self.config.get("input_dim", 80)),
                                                   num_codebooks, codebook_size, codebook_dim,
                                                   seed, target_pooling)
        self.heads = nn.ModuleList(nn.Linear(encoder.output_size, codebook_size)
                                   for _ in range(num_codebooks))
        self.start_prob = encoder_start_prob(mask_prob)
        self.span = span_frames(mask_span_ms)
        self.noise_std = noise_std
        self.vocab = self.decoder = None

    def forward(self, feats, feats_lens, targets=None, target_lens=None,
                chunk_size: Optional[int] = 0, left_context_size: int = 0,
                right_context_size: int = 0) -> dict:
        """Masked-prediction loss on a padded batch (``targets``/``target_lens``, transcripts,
        are not used: the trainer passes every model the same batch).

        Returns {"loss": mean over utterances of the cross-entropy averaged over an
        utterance's masked frames and codebooks; "accuracy": share of masked (frame, codebook)
        predictions that hit the target; "perplexity": exp of the entropy of the targets'
        codebook usage over the batch's frames (mean over codebooks; at most V);
        "masked_fraction"; "weight": B}.
        """
        codes = self.quantizer(feats, feats_lens)  # (B, T', K), -1 past each end
        lengths = (codes[..., 0] >= 0).sum(dim=1)
        mask = sample_span_mask(lengths, self.start_prob, self.span).to(feats.device)
        masked = mask_features(feats, feats_lens, mask, self.noise_std)
        enc, enc_lens = self.encoder(masked, feats_lens, chunk_size, left_context_size,
                                     right_context_size)
        logits = torch.stack([head(enc) for head in self.heads], dim=2)  # (B, T', K, V)
        ce = F.cross_entropy(logits.flatten(0, 2).float(), codes.clamp_min(0).flatten(),
                             reduction="none").view(codes.shape)  # (B, T', K)
        weight = mask[..., None].to(ce.dtype)
        per_utt = (ce * weight).sum(dim=(1, 2)) / (weight.sum(dim=(1, 2)) * codes.size(2))
        hits = ((logits.argmax(dim=-1) == codes) & mask[..., None]).sum()
        return {"loss": per_utt.mean(),
                "accuracy": (hits / (mask.sum() * codes.size(2)).clamp_min(1)).detach(),
                "perplexity": code_perplexity(codes, self.quantizer.codebook_size),
                "masked_fraction": (mask.sum() / lengths.sum().clamp_min(1)).detach().float(),
                "weight": feats.size(0)}

    @classmethod
    def from_config(cls, cfg: dict, cmvn: Optional[GlobalCMVN] = None,
                    cmvn_stats: Optional[bytes] = None) -> "BestRQModel":
        """A fresh model from a model section (``encoder_conf`` + ``ssl_conf``)."""
        kwargs, unused = encoder_kwargs(cfg)
        if unused:
            raise ConfigError(f"model section: keys not used by the model: {', '.join(unused)}")
        ssl_conf = check_keys("model.ssl_conf", dict(cfg.get("ssl_conf") or {}), cls)
        return cls(ChunkFormerEncoder(**kwargs, cmvn=cmvn), cfg, cmvn_stats, **ssl_conf)

    @classmethod
    def from_pretrained(cls, model_dir, device="cpu") -> "BestRQModel":
        """Load a pretrained folder strictly (every key present, no other key)."""
        folder = Path(model_dir)
        cfg = load_yaml(folder / "config.yaml")
        cmvn, stats = read_folder_cmvn(folder, cfg)
        model = cls.from_config(cfg, cmvn, stats)
        state = torch.load(find_weights(folder), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        return model.to(device).eval()


def code_perplexity(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """(B, T', K) codes (-1 = padding) → exp(entropy) of each codebook's usage, mean over K."""
    values = []
    for k in range(codes.size(2)):
        c = codes[..., k]
        counts = torch.bincount(c[c >= 0], minlength=codebook_size).float()
        p = counts / counts.sum().clamp_min(1)
        values.append(torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum()))
    return torch.stack(values).mean().detach()


def is_bestrq(cfg: dict) -> bool:
    """A model section / config.yaml of a BEST-RQ model."""
    return cfg.get("model") == MODEL_TYPE
