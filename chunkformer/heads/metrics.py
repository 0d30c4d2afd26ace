"""Evaluation of the task heads: accuracy, macro-F1, emotion UA/WA, speaker-verification EER,
confusion matrices (as numbers and as a PNG picture).

Pillow draws the picture (it comes with tensorboard, a dependency).
"""
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np


def confusion_matrix(refs: Sequence[int], hyps: Sequence[int], num_classes: int) -> np.ndarray:
    """(C, C) counts: row = reference class, column = predicted class."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(refs, dtype=np.int64), np.asarray(hyps, dtype=np.int64)), 1)
    return m


def classification_report(matrix: np.ndarray) -> Dict[str, float]:
    """accuracy (= weighted accuracy, WA), unweighted accuracy (UA: mean per-class recall over
    classes that occur), macro-F1 (mean over classes that occur or are predicted), in %."""
    total = matrix.sum()
    tp = np.diag(matrix).astype(float)
    support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    present = support > 0
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=present)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    counted = present | (predicted > 0)
    return {"accuracy": float(100.0 * tp.sum() / max(total, 1)),
            "unweighted_accuracy": float(100.0 * recall[present].mean()) if present.any()
            else 0.0,
            "macro_f1": float(100.0 * f1[counted].mean()) if counted.any() else 0.0,
            "utterances": int(total)}


def equal_error_rate(scores: Sequence[float], targets: Sequence[bool]) -> Dict[str, float]:
    """EER (%) of verification trials: the rate where false acceptance equals false rejection
    (interpolated between the two thresholds that bracket it), and that threshold."""
    scores, targets = np.asarray(scores, dtype=float), np.asarray(targets, dtype=bool)
    if targets.all() or not targets.any():
        raise ValueError("EER needs both target and non-target trials")
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], targets[order]
    # accepting the top k trials, k = 0..N
    fa = np.concatenate([[0], np.cumsum(~t)]) / (~t).sum()
    fr = 1 - np.concatenate([[0], np.cumsum(t)]) / t.sum()
    i = int(np.argmax(fa >= fr))  # first k where false acceptance catches up
    if i == 0:
        return {"eer": 0.0, "threshold": float(s[0]), "trials": int(len(s))}
    d0, d1 = fr[i - 1] - fa[i - 1], fa[i] - fr[i]
    w = d0 / (d0 + d1) if d0 + d1 > 0 else 0.5
    eer = fa[i - 1] + w * (fa[i] - fa[i - 1])
    threshold = s[i - 1] if i - 1 < len(s) else s[-1]
    return {"eer": 100.0 * float(eer), "threshold": float(threshold), "trials": int(len(s))}


def save_confusion_png(matrix: np.ndarray, classes: List[str], path, title: str = "") -> Path:
    """Draw the confusion matrix (rows: reference, columns: predicted; darker = larger share
    of the row) with its counts, class names and title → PNG."""
    from PIL import Image, ImageDraw

    n, cell, margin_left, margin_top = len(classes), 44, 150, 60
    width = margin_left + n * cell + 20
    height = margin_top + n * cell + 130
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((10, 10), title or "confusion matrix (rows: reference, columns: predicted)",
              fill="black")
    rows = matrix.sum(axis=1, keepdims=True).clip(min=1)
    share = matrix / rows
    for i in range(n):
        draw.text((10, margin_top + i * cell + cell // 2 - 5), f"{i}:{classes[i][:20]}",
                  fill="black")
        draw.text((margin_left + i * cell + cell // 2 - 3, margin_top - 14), str(i), fill="black")
        for j in range(n):
            x, y = margin_left + j * cell, margin_top + i * cell
            level = int(255 * (1 - share[i, j]))
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=(level, level, 255),
                           outline="grey")
            draw.text((x + 6, y + cell // 2 - 5), str(int(matrix[i, j])),
                      fill="white" if share[i, j] > 0.5 else "black")
    for j in range(n):  # predicted class names under the columns, one per line
        draw.text((margin_left + j * cell + 2, margin_top + n * cell + 6 + 12 * (j % 8)),
                  f"{j}:{classes[j][:10]}", fill="black")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
