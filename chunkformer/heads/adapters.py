"""Parameter-efficient adaptation of a trained encoder: bottleneck adapters after every block,
or LoRA on the attention projections. Only these (and the heads) train; they are saved as a
small file that loads on top of the base model.

Both attach through forward hooks, so the encoder's own parameter names stay those of the
released checkpoints (``encoder.*`` loads unchanged) and the new tensors live under
``adapters.*``. At initialisation both are the identity (the up / B matrices are zero): the
adapted model starts from exactly the base model's outputs.

* ``bottleneck`` (Houlsby et al., 2019): x + W_up(ReLU(W_down(LayerNorm(x)))) on each block's
  output, ``dim`` the bottleneck width.
* ``lora`` (Hu et al., 2021): W x + (alpha / rank) · B(A x) on ``linear_q``, ``linear_k``,
  ``linear_v`` and ``linear_out`` of every attention layer, ``dim`` the rank.
"""
from pathlib import Path
from typing import Dict, List

import torch
from torch import nn

from chunkformer.training.checkpoint import atomic_save

KINDS = ("bottleneck", "lora")
LORA_TARGETS = ("linear_q", "linear_k", "linear_v", "linear_out")


class Bottleneck(nn.Module):
    def __init__(self, dim: int, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.down = nn.Linear(dim, width)
        self.up = nn.Linear(width, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x):
        return x + self.up(torch.relu(self.down(self.norm(x))))


class LoRA(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, rank: int, alpha: float):
        super().__init__()
        self.A = nn.Parameter(torch.randn(rank, in_dim) / in_dim ** 0.5)
        self.B = nn.Parameter(torch.zeros(out_dim, rank))
        self.scale = alpha / rank

    def forward(self, x):
        return self.scale * (x @ self.A.t()) @ self.B.t()


def attach_adapters(model: nn.Module, kind: str, dim: int = 32, alpha: float = 16.0) -> int:
    """Add ``model.adapters`` (a ModuleDict) of ``kind`` to ``model.encoder`` and hook them in;
    returns their parameter count."""
    if kind not in KINDS:
        raise ValueError(f"adapter kind {kind!r} is not one of {', '.join(KINDS)}")
    adapters = nn.ModuleDict()
    for i, layer in enumerate(model.encoder.encoders):
        if kind == "bottleneck":
            module = adapters[f"block{i}"] = Bottleneck(model.encoder.output_size, dim)
            layer.register_forward_hook(
                lambda _m, _inp, out, a=module: (a(out[0]), *out[1:]))
            continue
        for target in LORA_TARGETS:
            linear = getattr(layer.self_attn, target)
            module = adapters[f"block{i}_{target}"] = LoRA(linear.in_features,
                                                          linear.out_features, dim, alpha)
            linear.register_forward_hook(lambda _m, inp, out, a=module: out + a(inp[0]))
    model.adapters = adapters.to(next(model.encoder.parameters()).device)
    return sum(p.numel() for p in adapters.parameters())


def trainable_names(model: nn.Module) -> List[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def save_trainable(model: nn.Module, path) -> Path:
    """Write only the parameters that train (adapters, heads, layer weights): the small file
    that, with the base model, makes the adapted model."""
    names = set(trainable_names(model))
    state = {k: v.detach().cpu() for k, v in model.state_dict().items() if k in names}
    atomic_save(state, Path(path))
    return Path(path)


def load_trainable(model: nn.Module, path) -> Dict[str, int]:
    """Load a :func:`save_trainable` file on top of a model built with the same adapters and
    heads; every tensor must match a parameter by name and shape."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = dict(model.named_parameters())
    wrong = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    if wrong:
        raise ValueError(f"{path}: tensors that do not fit the model: {', '.join(wrong[:10])}")
    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v)
    return {"tensors": len(state), "parameters": sum(v.numel() for v in state.values())}
