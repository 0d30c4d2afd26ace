"""Optimizer and learning-rate schedule.

Parameter groups: frozen parameters (by name prefix) are left out entirely; biases, norms and
the relative-position biases get no weight decay; with ``layer_decay`` < 1 encoder block i of N
gets ``lr · layer_decay^(N - i)`` (the front end ``layer_decay^(N + 1)``, heads the full rate),
so fine-tuning moves the lower layers less. The schedule is per optimizer step: linear warm-up to
the peak, then cosine decay to ``min_lr_ratio · peak`` at ``max_steps`` (never rising again),
or Noam (inverse square root after warm-up). Parameters under a ``hold`` prefix get their own
groups, whose rate is 0 for the first ``hold_steps`` steps (AdamW then leaves them exactly as
they are: its update and its weight decay both scale with the rate) and then warms up again over
``warmup_steps`` towards the schedule: released pretrained weights never meet the full rate at
once, which a new head's gradients at that point would use to wreck them.
"""
import math
from typing import Dict, List, Sequence

import torch

NO_DECAY = ("bias", "norm", "pos_bias_u", "pos_bias_v", "global_cmvn")


def freeze(model: torch.nn.Module, prefixes: Sequence[str]) -> List[str]:
    """Set requires_grad=False on parameters whose name starts with a prefix; returns them.
    A prefix that matches no parameter is an error (a freeze flag must freeze something)."""
    frozen = []
    for prefix in prefixes:
        hits = [n for n, p in model.named_parameters() if n.startswith(prefix)]
        if not hits:
            raise ValueError(f"freeze prefix {prefix!r} matches no parameter")
        frozen += hits
    for name, p in model.named_parameters():
        if name in frozen:
            p.requires_grad_(False)
    return frozen


def _layer_id(name: str, num_blocks: int) -> int:
    """0 = front end, i + 1 = encoder block i, num_blocks + 1 = everything above."""
    if name.startswith("encoder.encoders."):
        return int(name.split(".")[2]) + 1
    if name.startswith(("encoder.embed", "encoder.global_cmvn")):
        return 0
    return num_blocks + 1


def param_groups(model, lr: float, weight_decay: float, layer_decay: float = 1.0,
                 hold: Sequence[str] = ()) -> List[Dict]:
    num_blocks = len(model.encoder.encoders)
    hold = tuple(hold)
    groups: Dict[tuple, Dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        layer = _layer_id(name, num_blocks)
        decay = 0.0 if any(k in name for k in NO_DECAY) else weight_decay
        scale = layer_decay ** (num_blocks + 1 - layer)
        held = bool(hold) and name.startswith(hold)
        group = groups.setdefault((layer, decay, held), {
            "params": [], "names": [], "lr": lr * scale, "lr_scale": scale,
            "weight_decay": decay, "held": held})
        group["params"].append(p)
        group["names"].append(name)
    return list(groups.values())


def build_optimizer(model, lr: float = 1e-3, weight_decay: float = 0.01,
                    betas=(0.9, 0.98), eps: float = 1e-8, layer_decay: float = 1.0,
                    hold: Sequence[str] = ()):
    groups = param_groups(model, lr, weight_decay, layer_decay, hold)
    if not groups:
        raise ValueError("no trainable parameters (everything is frozen)")
    unmatched = [h for h in hold if not any(n.startswith(h) for g in groups for n in g["names"])]
    if unmatched:
        raise ValueError(f"freeze prefix {unmatched[0]!r} matches no parameter")
    # The fused kernel updates every tensor in one pass: for the default recipe's 1 M model on
    # one CPU thread 5 ms instead of 24 ms per step (foreach), ~5% of its training step.
    fused = all(p.device.type in ("cpu", "cuda") for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, fused=fused)


def lr_factor(step: int, warmup_steps: int, max_steps: int, kind: str = "cosine",
              min_lr_ratio: float = 0.0) -> float:
    """Multiplier of the peak rate for optimizer step ``step`` (0-based)."""
    if kind == "noam":
        s = step + 1
        return min(s / max(1, warmup_steps), math.sqrt(max(1, warmup_steps) / s))
    if kind != "cosine":
        raise ValueError(f"unknown scheduler {kind!r} (cosine or noam)")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer, warmup_steps: int, max_steps: int, kind: str = "cosine",
                    min_lr_ratio: float = 0.0, hold_steps: int = 0):
    """Per-group multipliers: :func:`lr_factor`; held groups 0 before ``hold_steps``, then
    :func:`lr_factor` times a linear ramp over ``warmup_steps`` from their release."""
    def factor(held: bool):
        def f(step: int) -> float:
            base = lr_factor(step, warmup_steps, max_steps, kind, min_lr_ratio)
            if not held or not hold_steps:
                return base
            released = step - hold_steps + 1
            return 0.0 if released <= 0 else base * min(1.0, released / max(1, warmup_steps))
        return f
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, [factor(g.get("held", False)) for g in optimizer.param_groups])


def trainable_summary(model) -> List[str]:
    """Lines 'group: trainable / total' per top-level module (printed at start)."""
    counts: Dict[str, List[int]] = {}
    for name, p in model.named_parameters():
        key = ".".join(name.split(".")[:2]) if name.startswith("encoder.") else name.split(".")[0]
        c = counts.setdefault(key, [0, 0])
        c[1] += p.numel()
        c[0] += p.numel() if p.requires_grad else 0
    return [f"{k}: {t:,} / {n:,} trainable" for k, (t, n) in counts.items()]
