"""Training checkpoints: atomic writes, retention, exact resume, and model averaging.

A checkpoint (``<exp>/checkpoints/step_<N>.pt``) holds everything needed to continue exactly:
model, optimizer, scheduler, grad scaler, every RNG, epoch, step and position in the data, the
validation history and the resolved config. It is written to a temporary file and renamed, so a
crash never leaves a half-written checkpoint; ``latest`` names the newest complete one.
"""
import json
import os
import random
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch


def rng_state(device: Optional[torch.device] = None) -> Dict:
    """Python, NumPy, torch CPU (and ``device``'s CUDA) RNG states, as CPU values that
    ``torch.load(weights_only=True)`` reads."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(internal), gauss],
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
             "torch": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Dict, device: Optional[torch.device] = None):
    """Restore :func:`rng_state` (the CUDA part on ``device`` when both have one)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def rank_seed(seed: int, rank: int) -> int:
    """A 63-bit seed for ``rank`` of a run seeded ``seed``: distinct per rank, reproducible."""
    hi, lo = np.random.SeedSequence([seed, rank]).generate_state(2, np.uint32)
    return (int(hi) << 31) ^ int(lo)


def seed_everything(seed: int, device: Optional[torch.device] = None):
    """Seed Python, NumPy and torch (CPU, and ``device`` when it is a GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds every CUDA device too


def atomic_save(obj, path: Path):
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


class CheckpointDir:
    """``<exp>/checkpoints``: step_<N>.pt files, ``latest``, ``history.json`` (step → dev
    metrics), keeping the last ``keep_last`` and the best ``keep_best`` by the dev ``metric``
    (lower is better)."""

    def __init__(self, exp_dir, keep_last: int = 5, keep_best: int = 5, metric: str = "loss"):
        self.dir = Path(exp_dir) / "checkpoints"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keep_last, self.keep_best, self.metric = keep_last, keep_best, metric

    def path(self, step: int) -> Path:
        return self.dir / f"step_{step:08d}.pt"

    def steps(self) -> List[int]:
        return sorted(int(p.stem[5:]) for p in self.dir.glob("step_*.pt"))

    def history(self) -> Dict[int, Dict]:
        f = self.dir / "history.json"
        return {int(k): v for k, v in json.loads(f.read_text()).items()} if f.exists() else {}

    def save(self, state: Dict, step: int, metrics: Optional[Dict] = None):
        atomic_save(state, self.path(step))
        history = self.history()
        if metrics is not None:
            history[step] = metrics
            tmp = self.dir / "history.json.tmp"
            tmp.write_text(json.dumps(history, indent=1))
            os.replace(tmp, self.dir / "history.json")
        tmp = self.dir / "latest.tmp"
        tmp.write_text(self.path(step).name)
        os.replace(tmp, self.dir / "latest")
        self._prune(history)

    def _prune(self, history):
        steps = self.steps()
        keep = set(steps[-self.keep_last:]) | set(self.best(self.keep_best, history,
                                                            self.metric))
        for s in steps:
            if s not in keep:
                self.path(s).unlink()

    def best(self, n: int, history: Optional[Dict] = None, metric: str = "loss") -> List[int]:
        """Steps of the n checkpoints with the lowest dev ``metric`` that still exist."""
        history = self.history() if history is None else history
        present = set(self.steps())
        scored = [(v[metric], s) for s, v in history.items() if metric in v and s in present]
        return [s for _, s in sorted(scored)[:n]]

    def latest(self) -> Optional[Path]:
        f = self.dir / "latest"
        if not f.exists():
            return None
        path = self.dir / f.read_text().strip()
        return path if path.exists() else None


def average_state_dicts(paths: List[Path]) -> Dict[str, torch.Tensor]:
    """Element-wise mean of the ``model`` weights of checkpoints (float64 accumulation);
    integer buffers are taken from the last one."""
    total: Dict[str, torch.Tensor] = {}
    for path in paths:
        state = torch.load(path, map_location="cpu", weights_only=True)["model"]
        for k, v in state.items():
            if v.is_floating_point():
                total[k] = total.get(k, 0) + v.double()
            else:
                total[k] = v
    return {k: (v / len(paths)).float() if v.is_floating_point() else v
            for k, v in total.items()}
