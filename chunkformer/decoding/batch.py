"""The one decode function: features → masked-batch encoder → CTC search → transcripts.

``decode_features`` is what the recognize CLI, the Python API and validation in training all
call, so they cannot disagree. Modes: ``ctc_greedy``, ``ctc_prefix_beam`` and
``attention_rescoring`` (CTC prefix beam n-best rescored by the attention decoder).
"""
from typing import List, Optional, Sequence

import torch

from chunkformer.decoding.spans import SpanSearch
from chunkformer.decoding.transcript import Transcript

MODES = ("ctc_greedy", "ctc_prefix_beam", "attention_rescoring")  # every model's
TRANSDUCER_MODES = ("rnnt_greedy", "rnnt_beam")  # transducer models' own
ALL_MODES = MODES + TRANSDUCER_MODES


def resolve_mode(model, mode: Optional[str]) -> str:
    """``mode``, or None: the model's own first mode (``ctc_greedy``; ``rnnt_greedy`` for a
    transducer, as the reference decodes it)."""
    return mode or getattr(model, "modes", MODES)[0]


def check_mode(model, mode: str, bias=None):
    modes = getattr(model, "modes", MODES)
    if mode not in modes:
        raise ValueError(f"decoding mode {mode!r} is not one this model has (choose from "
                         f"{', '.join(modes)})")
    if bias is not None and mode in ("ctc_greedy", "rnnt_greedy"):
        raise ValueError(f"hotwords and a language model need a beam mode "
                         f"(ctc_prefix_beam, attention_rescoring, rnnt_beam), not {mode}")
    if mode == "attention_rescoring" and model.decoder is None:
        raise ValueError("attention_rescoring needs a model with an attention decoder "
                         "(this folder has no decoder.* weights)")


def set_max_symbols(model, max_symbols: Optional[int]):
    """Cap the symbols one encoder frame may emit in a transducer's searches (None: keep the
    model's cap, the reference's 64); ValueError for a model without a transducer."""
    if max_symbols is None:
        return
    if not hasattr(model, "max_symbols"):
        raise ValueError(f"max_symbols {max_symbols}: only a transducer model's search has a "
                         "per-frame symbol cap, this model has none")
    model.max_symbols = max_symbols


def frame_budget(total_batch_duration: float) -> int:
    """Fbank frames per batch for a duration in seconds, as upstream computes it (spec §9)."""
    if total_batch_duration <= 0:
        raise ValueError(f"total_batch_duration must be > 0 seconds, got {total_batch_duration}")
    return int(total_batch_duration // 0.01) // 2


def budget_groups(frame_counts: Sequence[int], total_batch_duration: float) -> List[List[int]]:
    """Indices grouped in order; a group closes once its frames reach the budget (the item
    that overflows stays in it), as upstream ``batch_decode`` does."""
    budget = frame_budget(total_batch_duration)
    groups, current, left = [], [], budget
    for i, n in enumerate(frame_counts):
        current.append(i)
        left -= n
        if left <= 0:
            groups.append(current)
            current, left = [], budget
    if current:
        groups.append(current)
    return groups


@torch.no_grad()
def decode_features(model, feats: List[torch.Tensor], chunk_size: Optional[int],
                    left_context_size: int, right_context_size: int,
                    mode: Optional[str] = None,
                    beam_size: int = 10, ctc_weight: float = 0.5,
                    reverse_weight: float = 0.0, bias=None) -> List[Transcript]:
    """Decode unpadded fbank features [(T_i, 80)] as one masked batch (``bias``: a
    :class:`~chunkformer.decoding.bias.DecodingBias` for the beam modes; ``mode`` None: the
    model's greedy mode)."""
    mode = resolve_mode(model, mode)
    check_mode(model, mode, bias)
    feats = [f.to(model.device) for f in feats]
    encs = model.encoder.forward_list(feats, chunk_size, left_context_size, right_context_size)
    if mode in TRANSDUCER_MODES:
        return model.transducer_transcripts(encs, mode, beam_size, bias)
    out = []
    for enc in encs:
        spans = SpanSearch(model, mode, beam_size, ctc_weight, reverse_weight, bias)
        spans.add(enc)
        out.append(spans.finish())
    return out


def decode_audios(model, audios, chunk_size, left_context_size, right_context_size,
                  total_batch_duration, mode=None, beam_size=10, sample_rate=None,
                  ctc_weight: float = 0.5, reverse_weight: float = 0.0, bias=None):
    """Paths or waveforms → transcripts, in masked batches of bounded total duration."""
    mode = resolve_mode(model, mode)
    check_mode(model, mode, bias)
    feats = [model.features(a, sample_rate) for a in audios]
    results = [None] * len(feats)
    for group in budget_groups([f.size(0) for f in feats], total_batch_duration):
        decoded = decode_features(model, [feats[i] for i in group], chunk_size,
                                  left_context_size, right_context_size, mode, beam_size,
                                  ctc_weight, reverse_weight, bias)
        for i, r in zip(group, decoded):
            results[i] = r
    return results
