"""Examples → one padded :class:`Batch`; rows the dataset skipped ride along in ``skipped``.

The trainer feeds ``feats``/``feats_lens`` to the model as a masked batch, so the zero padding
never reaches a loss; ``targets`` are padded with -1 so a padded position cannot pass for a
real token id.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import torch
from torch.nn.utils.rnn import pad_sequence

from chunkformer.data.dataset import Skipped

TARGET_PAD = -1


@dataclass
class Batch:
    """One batch of B utterances (B may be 0 when every item was skipped).

    Attributes:
        keys: B utterance keys.
        feats: (B, T, F) float32 fbank, zero-padded after each utterance's length; T = max
            length (0 when B = 0).
        feats_lens: (B,) int64 valid frames per utterance.
        targets: (B, U) int64 token ids, padded with -1; U = longest transcript.
        target_lens: (B,) int64 tokens per utterance.
        audio_seconds: total seconds of source audio in the batch (throughput).
        skipped: (key, reason) of the items of this batch that were left out.
        labels: {field: (B,) int64 class ids, -1 where an utterance has no such label} for
            the classification heads (empty for ASR and pretraining).
        rows: list rows the B examples hold (more than B when long-form examples join rows).
    """

    keys: List[str]
    feats: torch.Tensor
    feats_lens: torch.Tensor
    targets: torch.Tensor
    target_lens: torch.Tensor
    audio_seconds: float
    skipped: List[Skipped] = field(default_factory=list)
    labels: Dict[str, torch.Tensor] = field(default_factory=dict)
    rows: int = 0

    def _map(self, fn) -> "Batch":
        return Batch(self.keys, fn(self.feats), fn(self.feats_lens), fn(self.targets),
                     fn(self.target_lens), self.audio_seconds, self.skipped,
                     {k: fn(v) for k, v in self.labels.items()}, self.rows)

    def to(self, device, non_blocking: bool = False) -> "Batch":
        """The tensors moved to ``device``."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "Batch":
        """Page-locked copy; the DataLoader calls this with ``pin_memory=True``."""
        return self._map(torch.Tensor.pin_memory)


def collate(items: Sequence, num_mel_bins: int = 80) -> Batch:
    """Dataset items (example dicts and :class:`Skipped`, or lists of them) → :class:`Batch`,
    in item order."""
    items = [x for item in items for x in (item if isinstance(item, list) else [item])]
    examples = [x for x in items if not isinstance(x, Skipped)]
    skipped = [x for x in items if isinstance(x, Skipped)]
    lens = torch.tensor([e["feats"].size(0) for e in examples], dtype=torch.long)
    target_lens = torch.tensor([e["targets"].numel() for e in examples], dtype=torch.long)
    if examples:
        feats = pad_sequence([e["feats"] for e in examples], batch_first=True)
        targets = pad_sequence([e["targets"] for e in examples], batch_first=True,
                               padding_value=TARGET_PAD)
    else:
        feats = torch.zeros(0, 0, num_mel_bins)
        targets = torch.zeros(0, 0, dtype=torch.long)
    fields = sorted({f for e in examples for f in e.get("labels", {})})
    labels = {f: torch.tensor([e.get("labels", {}).get(f, -1) for e in examples],
                              dtype=torch.long) for f in fields}
    return Batch(keys=[e["key"] for e in examples], feats=feats, feats_lens=lens,
                 targets=targets, target_lens=target_lens,
                 audio_seconds=float(sum(e["audio_seconds"] for e in examples)),
                 skipped=skipped, labels=labels,
                 rows=sum(e.get("rows", 1) for e in examples))
