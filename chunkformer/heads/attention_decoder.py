"""Transformer attention decoder for hybrid CTC/AED training and attention rescoring.

The architecture and state-dict key names follow the WeNet decoders that released ChunkFormer
checkpoints were trained with (spec/model.md §6; Vaswani et al. 2017, "Attention Is All You
Need"). Pre-norm blocks:

    x = x + SelfAttn(LN1(x))            causal, padded tokens masked
    x = x + SrcAttn(LN2(x), memory)     padded encoder frames masked
    x = x + FFN(LN3(x))                 ReLU
    logits = output_layer(after_norm(x))

``BiTransformerDecoder`` adds a right-to-left decoder (``right_decoder``) whose score helps
rescoring (WeNet U2++).
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from chunkformer.encoder.layer import FeedForward
from chunkformer.encoder.position import relative_position_table

MAX_POSITIONS = 5000  # rows of the ``embed.1.pe`` buffer saved in released checkpoints


class PositionalEncoding(nn.Module):
    """x * sqrt(D) + PE[:U], then dropout. ``pe`` (1, 5000, D) is a persistent buffer because
    released checkpoints store it (``embed.1.pe``)."""

    def __init__(self, dim: int, dropout_rate: float):
        super().__init__()
        self.scale = math.sqrt(dim)
        self.dropout = nn.Dropout(dropout_rate)
        # The relative table lists PE(p) for p = MAX_POSITIONS-1 … 0; flipped it is the absolute
        # table PE(0) … PE(MAX_POSITIONS-1) with the same sin/cos formula.
        table = relative_position_table(1, MAX_POSITIONS - 1, 0, dim).flip(0)
        self.register_buffer("pe", table.unsqueeze(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, U, D) → (B, U, D)."""
        if x.size(1) > self.pe.size(1):
            raise ValueError(f"decoder input of {x.size(1)} tokens exceeds {self.pe.size(1)}")
        return self.dropout(x * self.scale + self.pe[:, : x.size(1)])


class MultiHeadAttention(nn.Module):
    """Plain scaled dot-product attention; keys ``linear_{q,k,v,out}``."""

    def __init__(self, n_head: int, n_feat: int, dropout_rate: float):
        super().__init__()
        assert n_feat % n_head == 0, "attention dim must be divisible by the number of heads"
        self.h, self.d_k = n_head, n_feat // n_head
        self.dropout_rate = dropout_rate
        self.linear_q = nn.Linear(n_feat, n_feat)
        self.linear_k = nn.Linear(n_feat, n_feat)
        self.linear_v = nn.Linear(n_feat, n_feat)
        self.linear_out = nn.Linear(n_feat, n_feat)

    def forward(self, query: torch.Tensor, key_value: torch.Tensor,
                attend: torch.Tensor) -> torch.Tensor:
        """query (B, U, D), key_value (B, S, D), attend (B, 1, U or 1, S) bool, True where a
        query may look at a key; every row needs at least one True → (B, U, D)."""
        b = query.size(0)
        q = self.linear_q(query).view(b, -1, self.h, self.d_k).transpose(1, 2)  # (B, H, U, dk)
        k = self.linear_k(key_value).view(b, -1, self.h, self.d_k).transpose(1, 2)
        v = self.linear_v(key_value).view(b, -1, self.h, self.d_k).transpose(1, 2)
        dropout = self.dropout_rate if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attend, dropout_p=dropout)
        return self.linear_out(y.transpose(1, 2).reshape(b, -1, self.h * self.d_k))


class DecoderLayer(nn.Module):
    """One pre-norm block: self-attention, source attention, ReLU feed-forward."""

    def __init__(self, dim: int, heads: int, linear_units: int, dropout_rate: float,
                 self_attention_dropout_rate: float, src_attention_dropout_rate: float):
        super().__init__()
        self.self_attn = MultiHeadAttention(heads, dim, self_attention_dropout_rate)
        self.src_attn = MultiHeadAttention(heads, dim, src_attention_dropout_rate)
        self.feed_forward = FeedForward(dim, linear_units, dropout_rate, activation="relu")
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.norm3 = nn.LayerNorm(dim, eps=1e-5)
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, x, tgt_attend, memory, memory_attend):
        """x (B, U, D), tgt_attend (B, 1, U, U), memory (B, T, D), memory_attend (B, 1, 1, T)."""
        y = self.norm1(x)
        x = x + self.dropout(self.self_attn(y, y, tgt_attend))
        x = x + self.dropout(self.src_attn(self.norm2(x), memory, memory_attend))
        return x + self.dropout(self.feed_forward(self.norm3(x)))


def _check_fixed(**options):
    """WeNet ``decoder_conf`` options this decoder accepts only at the released value."""
    allowed = {"input_layer": "embed", "use_output_layer": True, "concat_after": False,
               "normalize_before": True}
    for name, value in options.items():
        if value != allowed[name]:
            raise ValueError(f"decoder_conf.{name}={value!r} is not supported "
                             f"(only {allowed[name]!r})")


class TransformerDecoder(nn.Module):
    """Left-to-right Transformer decoder; keys ``embed.*``, ``decoders.{j}.*``,
    ``after_norm.*``, ``output_layer.*``."""

    def __init__(self, vocab_size: int, encoder_output_size: int, attention_heads: int = 4,
                 linear_units: int = 2048, num_blocks: int = 6, dropout_rate: float = 0.1,
                 positional_dropout_rate: float = 0.1, self_attention_dropout_rate: float = 0.0,
                 src_attention_dropout_rate: float = 0.0, input_layer: str = "embed",
                 use_output_layer: bool = True, normalize_before: bool = True,
                 concat_after: bool = False):
        super().__init__()
        _check_fixed(input_layer=input_layer, use_output_layer=use_output_layer,
                     normalize_before=normalize_before, concat_after=concat_after)
        dim = encoder_output_size
        self.embed = nn.Sequential(nn.Embedding(vocab_size, dim),
                                   PositionalEncoding(dim, positional_dropout_rate))
        self.decoders = nn.ModuleList(
            DecoderLayer(dim, attention_heads, linear_units, dropout_rate,
                         self_attention_dropout_rate, src_attention_dropout_rate)
            for _ in range(num_blocks))
        self.after_norm = nn.LayerNorm(dim, eps=1e-5)
        self.output_layer = nn.Linear(dim, vocab_size)

    def logits(self, memory: torch.Tensor, memory_attend: torch.Tensor, ys_in: torch.Tensor,
               ys_in_lens: torch.Tensor) -> torch.Tensor:
        """memory (B, T, D), memory_attend (B, 1, 1, T) bool, ys_in (B, U) → logits (B, U, V)."""
        u = ys_in.size(1)
        causal = torch.ones(u, u, dtype=torch.bool, device=ys_in.device).tril()  # (U, U)
        valid = torch.arange(u, device=ys_in.device) < ys_in_lens.unsqueeze(1)  # (B, U)
        tgt_attend = (causal & valid.unsqueeze(1)).unsqueeze(1)  # (B, 1, U, U)
        x = self.embed(ys_in)  # (B, U, D)
        for layer in self.decoders:
            x = layer(x, tgt_attend, memory, memory_attend)
        return self.output_layer(self.after_norm(x))

    def forward(self, memory: torch.Tensor, memory_lens: torch.Tensor, ys_in: torch.Tensor,
                ys_in_lens: torch.Tensor, r_ys_in: Optional[torch.Tensor] = None,
                reverse_weight: float = 0.0) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Teacher-forced logits.

        Args:
            memory: (B, T, D) encoder output; memory_lens: (B,) valid frames, each ≥ 1.
            ys_in: (B, U) long, ``sos`` + tokens, padded; ys_in_lens: (B,) each ≥ 1.
            r_ys_in, reverse_weight: ignored (same call as ``BiTransformerDecoder``).
        Returns:
            logits (B, U, V) and None.
        """
        return self.logits(memory, memory_attend_mask(memory, memory_lens), ys_in,
                           ys_in_lens), None


class BiTransformerDecoder(nn.Module):
    """Left-to-right and right-to-left decoders; keys ``left_decoder.*``, ``right_decoder.*``.
    The right decoder reads ``sos`` + reversed tokens and has ``r_num_blocks`` layers."""

    def __init__(self, vocab_size: int, encoder_output_size: int, attention_heads: int = 4,
                 linear_units: int = 2048, num_blocks: int = 6, r_num_blocks: int = 0,
                 dropout_rate: float = 0.1, positional_dropout_rate: float = 0.1,
                 self_attention_dropout_rate: float = 0.0,
                 src_attention_dropout_rate: float = 0.0, input_layer: str = "embed",
                 use_output_layer: bool = True, normalize_before: bool = True,
                 concat_after: bool = False):
        super().__init__()
        shared = dict(attention_heads=attention_heads, linear_units=linear_units,
                      dropout_rate=dropout_rate, positional_dropout_rate=positional_dropout_rate,
                      self_attention_dropout_rate=self_attention_dropout_rate,
                      src_attention_dropout_rate=src_attention_dropout_rate,
                      input_layer=input_layer, use_output_layer=use_output_layer,
                      normalize_before=normalize_before, concat_after=concat_after)
        self.left_decoder = TransformerDecoder(vocab_size, encoder_output_size,
                                               num_blocks=num_blocks, **shared)
        self.right_decoder = TransformerDecoder(vocab_size, encoder_output_size,
                                                num_blocks=r_num_blocks, **shared)

    def forward(self, memory: torch.Tensor, memory_lens: torch.Tensor, ys_in: torch.Tensor,
                ys_in_lens: torch.Tensor, r_ys_in: Optional[torch.Tensor] = None,
                reverse_weight: float = 0.0) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """As ``TransformerDecoder.forward``; also returns right-to-left logits (B, U, V) for
        ``r_ys_in`` (B, U) when ``reverse_weight`` > 0, else None."""
        memory_attend = memory_attend_mask(memory, memory_lens)
        logits = self.left_decoder.logits(memory, memory_attend, ys_in, ys_in_lens)
        if reverse_weight <= 0.0:
            return logits, None
        if r_ys_in is None:
            raise ValueError("reverse_weight > 0 needs r_ys_in")
        return logits, self.right_decoder.logits(memory, memory_attend, r_ys_in, ys_in_lens)


def memory_attend_mask(memory: torch.Tensor, memory_lens: torch.Tensor) -> torch.Tensor:
    """(B, T, D), (B,) → (B, 1, 1, T) bool, True on valid encoder frames."""
    valid = torch.arange(memory.size(1), device=memory.device) < memory_lens.unsqueeze(1)
    return valid[:, None, None, :]


DECODERS = {"transformer": TransformerDecoder, "bitransformer": BiTransformerDecoder}


def build_decoder(kind: str, vocab_size: int, encoder_output_size: int,
                  decoder_conf: dict) -> nn.Module:
    """WeNet ``decoder`` + ``decoder_conf`` → a decoder module."""
    if kind not in DECODERS:
        raise ValueError(f"unknown decoder {kind!r}; expected one of {sorted(DECODERS)}")
    return DECODERS[kind](vocab_size, encoder_output_size, **decoder_conf)


def attention_loss(decoder: nn.Module, memory: torch.Tensor, memory_lens: torch.Tensor,
                   ys: torch.Tensor, ys_lens: torch.Tensor, sos: int, eos: int,
                   lsm_weight: float = 0.1, reverse_weight: float = 0.0) -> torch.Tensor:
    """Per-utterance label-smoothed cross-entropy of the teacher-forced decoder, (B,).

    Targets are ``ids + eos`` after input ``sos + ids`` (reversed ids for the right-to-left
    decoder, weighted by ``reverse_weight``). Each utterance's loss is averaged over its U + 1
    target positions, like the CTC loss, so hybrid weights mean what they say.
    """
    ys_in, targets, lens = teacher_forcing(ys, ys_lens, sos, eos)
    r_ys_in, r_targets, _ = teacher_forcing(reverse_padded(ys, ys_lens), ys_lens, sos,
                                                    eos)
    logits, r_logits = decoder(memory, memory_lens, ys_in, lens, r_ys_in, reverse_weight)
    loss = _smoothed_ce(logits, targets, lens, lsm_weight)
    if r_logits is not None:
        loss = (1.0 - reverse_weight) * loss + reverse_weight * _smoothed_ce(
            r_logits, r_targets, lens, lsm_weight)
    return loss


def teacher_forcing(ys, ys_lens, sos: int, eos: int):
    """(B, U) padded ids → ys_in (B, U+1) = sos + ids, targets (B, U+1) = ids + eos (padding
    eos), lens (B,) = U_i + 1."""
    b, u = ys.shape
    pos = torch.arange(u + 1, device=ys.device)
    valid = pos[:u] < ys_lens.unsqueeze(1)
    ids = torch.where(valid, ys, torch.full_like(ys, eos))
    ys_in = torch.cat([torch.full((b, 1), sos, dtype=ys.dtype, device=ys.device), ids], 1)
    targets = torch.cat([ids, torch.full((b, 1), eos, dtype=ys.dtype, device=ys.device)], 1)
    return ys_in, targets, ys_lens + 1


def reverse_padded(ys, ys_lens):
    """Reverse each row's first ys_lens[i] ids; padding stays at the end."""
    u = ys.size(1)
    pos = torch.arange(u, device=ys.device)
    index = (ys_lens.unsqueeze(1) - 1 - pos).clamp(min=0)
    rev = ys.gather(1, index)
    return torch.where(pos < ys_lens.unsqueeze(1), rev, ys)


def _smoothed_ce(logits, targets, lens, lsm_weight: float) -> torch.Tensor:
    """Label smoothing as KL to (1 - ε) one-hot + ε / (V - 1) elsewhere (WeNet convention),
    averaged over each row's ``lens`` positions → (B,)."""
    logp = logits.float().log_softmax(-1)  # (B, U, V)
    v = logp.size(-1)
    conf, other = 1.0 - lsm_weight, lsm_weight / (v - 1)
    target_lp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    ce = -(conf - other) * target_lp - other * logp.sum(-1)
    if lsm_weight > 0:  # subtract the entropy of the smoothed target: a KL, 0 when perfect
        ce += conf * math.log(conf) + (v - 1) * other * math.log(other)
    valid = torch.arange(targets.size(1), device=lens.device) < lens.unsqueeze(1)
    return (ce * valid).sum(-1) / lens.to(ce.dtype)
