"""Call outcome from its turns.

A call's outcome often hinges on one moment: the customer gets angry once, or asks once to
transfer money. A classifier pooled over the whole call dilutes that moment among minutes of
everything else, and a few hundred labeled calls are too few to teach it where to look. Here
the utterance heads (intent, emotion, ...), trained on thousands of utterances, score every
speaker turn, and a call becomes one small vector: for every role, head and class, the highest
probability that any turn of that role reached ("the customer sounded angry at some point",
"someone asked to transfer money"). A multinomial logistic regression on that vector, fitted
on labeled calls, gives the outcome.

Every feature comes from one turn, so the decision splits over the turns: for the predicted
class ``c``, feature ``f`` adds ``(W[c, f] - mean_k W[k, f]) * x_f`` to ``c``'s logit margin
over the average class; a turn's weight is the sum of the positive additions of the features
it supplied (normalised over the call), and the largest additions are the reasons shown.

Turns are segment rows (``start``/``end`` in the call's audio) whose ``group`` is the call's
key, with a ``role`` label (``bot``, ``customer``, ...; ``turn`` when absent): what a bot
platform or a stereo recording gives.
"""
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

NO_ROLE = "turn"
L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


@dataclass
class Turn:
    """One speaker turn of a call and its utterance heads' class probabilities."""

    key: str
    start: float
    end: float
    role: str
    scores: Dict[str, Dict[str, float]] = field(default_factory=dict)  # head → class → p


def group_turns(turns: Sequence[Turn], calls: Sequence[str]) -> Dict[str, List[Turn]]:
    """{call: its turns in time order}; ``calls[i]`` is the call of ``turns[i]``."""
    out: Dict[str, List[Turn]] = {}
    for turn, call in zip(turns, calls):
        out.setdefault(call, []).append(turn)
    return {call: sorted(ts, key=lambda t: (t.start, t.key)) for call, ts in out.items()}


def feature_names(calls: Dict[str, List[Turn]], heads: Optional[Sequence[str]] = None
                  ) -> List[str]:
    """``<role>/<head>/<class>`` for every role, head (default: all scored) and class seen."""
    roles, classes = set(), {}
    for turns in calls.values():
        for t in turns:
            roles.add(t.role)
            for head, probs in t.scores.items():
                if heads is None or head in heads:
                    classes.setdefault(head, set()).update(probs)
    missing = [h for h in (heads or ()) if h not in classes]
    if missing:
        raise ValueError(f"no turn has scores of head(s) {missing} (scored: {sorted(classes)})")
    return [f"{role}/{head}/{c}" for role in sorted(roles) for head in sorted(classes)
            for c in sorted(classes[head])]


def call_features(turns: Sequence[Turn], names: Sequence[str]) -> Tuple[np.ndarray, List[int]]:
    """(F,) the highest probability any turn of the role gave the class (0 without such a
    turn), and for each feature the index of the turn that gave it (-1: none)."""
    x, source = np.zeros(len(names)), []
    for f, name in enumerate(names):
        role, head, cls = name.split("/", 2)
        best, who = 0.0, -1
        for i, t in enumerate(turns):
            p = t.scores.get(head, {}).get(cls)
            if t.role == role and p is not None and (who < 0 or p > best):
                best, who = float(p), i
        x[f] = best
        source.append(who)
    return x, source


@dataclass
class TurnOutcome:
    """Multinomial logistic regression from turn features to the call outcome."""

    classes: List[str]
    names: List[str]
    weight: np.ndarray  # (C, F)
    bias: np.ndarray  # (C,)

    @classmethod
    def fit(cls, x: np.ndarray, labels: Sequence[str], names: Sequence[str],
            balanced: bool = True, l2: float = 1e-2, iterations: int = 200) -> "TurnOutcome":
        """Fit on (N, F) features and N labels; ``balanced`` weighs each class's calls by
        N / (C * count) so that a rare outcome counts as much as a common one; ``l2`` is the
        penalty on the weights (not the bias). Full-batch L-BFGS in float64: deterministic."""
        classes = sorted(set(labels))
        if len(classes) < 2:
            raise ValueError(f"need calls of at least two outcomes, got {classes}")
        y = torch.tensor([classes.index(v) for v in labels])
        sample = _sample_weights(y, len(classes), balanced)
        xt = torch.as_tensor(np.asarray(x), dtype=torch.float64)
        w = torch.zeros(len(classes), xt.size(1), dtype=torch.float64, requires_grad=True)
        b = torch.zeros(len(classes), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iterations, tolerance_grad=1e-9,
                                tolerance_change=1e-12, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            nll = torch.nn.functional.cross_entropy(xt @ w.T + b, y, reduction="none")
            loss = (sample * nll).sum() + 0.5 * l2 * (w * w).sum()
            loss.backward()
            return loss

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a tiny problem: threads would only wait on each other
        try:
            opt.step(closure)
        finally:
            torch.set_num_threads(threads)
        return cls(classes, list(names), w.detach().numpy(), b.detach().numpy())

    @classmethod
    def fit_cv(cls, x: np.ndarray, labels: Sequence[str], names: Sequence[str],
               balanced: bool = True, grid: Sequence[float] = L2_GRID, folds: int = 5,
               seed: int = 0) -> Tuple["TurnOutcome", Dict[float, float]]:
        """Choose ``l2`` from ``grid`` by stratified ``folds``-fold cross-validation (the
        held-out calls' cross-entropy, weighted as in the fit), then fit on all calls.
        Returns the model and {l2: cross-validated loss}."""
        labels = list(labels)
        classes = sorted(set(labels))
        rng = np.random.default_rng(seed)
        fold = np.zeros(len(labels), dtype=int)
        for c in classes:  # each class dealt round-robin over the folds, in a seeded order
            members = rng.permutation([i for i, v in enumerate(labels) if v == c])
            fold[members] = np.arange(len(members)) % folds
        y = torch.tensor([classes.index(v) for v in labels])
        sample = _sample_weights(y, len(classes), balanced).numpy()
        losses = {}
        for l2 in grid:
            total = 0.0
            for k in range(folds):
                train, held = fold != k, fold == k
                if not held.any() or len({labels[i] for i in np.flatnonzero(train)}) < 2:
                    continue
                model = cls.fit(x[train], [labels[i] for i in np.flatnonzero(train)], names,
                                balanced, l2)
                p = model.probabilities(x[held])
                for i, row in zip(np.flatnonzero(held), p):
                    known = labels[i] in model.classes
                    q = row[model.classes.index(labels[i])] if known else 0.0
                    total -= sample[i] * np.log(max(q, 1e-12))
            losses[l2] = float(total)
        best = min(losses, key=losses.get)
        return cls.fit(x, labels, names, balanced, best), losses

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(N, F) or (F,) features → (N, C) or (C,) class probabilities."""
        z = np.asarray(x) @ self.weight.T + self.bias
        z = np.exp(z - z.max(axis=-1, keepdims=True))
        return z / z.sum(axis=-1, keepdims=True)

    def explain(self, x: np.ndarray, source: Sequence[int], num_turns: int, label: str,
                top: int = 3) -> Tuple[List[float], List[Tuple[int, str, float, float]]]:
        """Why ``label``: each turn's weight (sums to 1 when any feature pushed towards it)
        and the ``top`` reasons as (turn index, feature name, value, contribution)."""
        c = self.classes.index(label)
        contrib = (self.weight[c] - self.weight.mean(axis=0)) * np.asarray(x)
        weights = np.zeros(num_turns)
        for f, turn in enumerate(source):
            if turn >= 0 and contrib[f] > 0:
                weights[turn] += contrib[f]
        total = weights.sum()
        if total > 0:
            weights /= total
        order = [f for f in np.argsort(-contrib, kind="stable") if contrib[f] > 0
                 and source[f] >= 0][:top]
        return weights.tolist(), [(source[f], self.names[f], float(x[f]), float(contrib[f]))
                                  for f in order]

    @property
    def heads(self) -> List[str]:
        """The utterance heads whose turn scores the layer reads."""
        return sorted({name.split("/")[1] for name in self.names})

    def decide(self, turns: Sequence[Turn], top: int = 3) -> dict:
        """One call's outcome: {label, probability, probs (C,), weights (one per turn),
        reasons [(turn index, feature name, value, contribution)]} (see :meth:`explain`)."""
        x, source = call_features(turns, self.names)
        probs = self.probabilities(x)
        best = int(probs.argmax())
        weights, reasons = self.explain(x, source, len(turns), self.classes[best], top)
        return {"label": self.classes[best], "probability": float(probs[best]), "probs": probs,
                "weights": weights, "reasons": reasons}

    def save(self, path) -> Path:
        """JSON (classes, feature names, weights), written atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"classes": self.classes, "features": self.names,
                                   "weight": self.weight.tolist(),
                                   "bias": self.bias.tolist()}, ensure_ascii=False, indent=1),
                       encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path) -> "TurnOutcome":
        try:
            spec = json.loads(Path(path).read_text(encoding="utf-8"))
            model = cls(list(spec["classes"]), list(spec["features"]),
                        np.asarray(spec["weight"], dtype=float),
                        np.asarray(spec["bias"], dtype=float))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: not a turn-outcome model ({e})") from None
        if model.weight.shape != (len(model.classes), len(model.names)) or \
                model.bias.shape != (len(model.classes),):
            raise ValueError(f"{path}: weight {model.weight.shape} / bias {model.bias.shape} "
                             f"do not match {len(model.classes)} classes x "
                             f"{len(model.names)} features")
        return model


def _sample_weights(y: torch.Tensor, num_classes: int, balanced: bool) -> torch.Tensor:
    """(N,) float64 weights summing to 1: equal per call, or equal per class (balanced)."""
    if balanced:
        counts = torch.bincount(y, minlength=num_classes).double()
        w = len(y) / (num_classes * counts[y])
    else:
        w = torch.ones(len(y), dtype=torch.float64)
    return w / w.sum()


def describe(turn: Turn, index: int, feature: str, value: float) -> str:
    """A reason a person reads: ``customer turn 2 (5.1-9.8 s): emotion angry 0.93``."""
    _, head, cls = feature.split("/", 2)
    return (f"{turn.role} turn {index + 1} ({turn.start:.1f}-{turn.end:.1f} s): "
            f"{head} {cls} {value:.2f}")
