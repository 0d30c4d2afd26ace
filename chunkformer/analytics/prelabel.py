"""Pre-labeling of calls for annotators: cluster the pooled embeddings, give every call its
cluster, a distance-based confidence and the nearest labeled calls, and let the rule layer
(:mod:`.rules`) turn that, the heads' outputs and the transcript into a proposed label with a
confidence and a reason. The table is written as CSV (opens in any spreadsheet).
"""
import csv
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional

import kaldiio
import numpy as np

from chunkformer.analytics.cluster import agglomerative, centres_of, confidence, kmeans, nearest
from chunkformer.analytics.rules import Call, RuleSet

COLUMNS = ("key", "cluster", "cluster_confidence", "nearest_labeled", "proposed_label",
           "confidence", "reason")


def read_pooled(index_path) -> Dict[str, np.ndarray]:
    """extract_embeddings' ``index.tsv`` → {key: pooled vector}, in index order."""
    index_path = Path(index_path)
    root, out = index_path.parent, {}
    lines = index_path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].split("\t")[:3] != ["key", "frames", "pooled"]:
        raise ValueError(f"{index_path}: not an extract_embeddings index (key, frames, pooled…)")
    tables = {}
    for n, line in enumerate(lines[1:], 2):
        fields = line.split("\t")
        if len(fields) < 3:
            raise ValueError(f"{index_path}:{n}: expected 5 tab-separated fields")
        key, pooled = fields[0], fields[2]
        if pooled.endswith(".scp"):
            if pooled not in tables:
                tables[pooled] = kaldiio.load_scp(str(root / pooled))
            out[key] = np.asarray(tables[pooled][key])
        else:
            out[key] = np.load(root / pooled)
    return out


def prelabel(pooled: Dict[str, np.ndarray], rules: RuleSet, k: int, method: str = "kmeans",
             labeled: Optional[Dict[str, str]] = None, transcripts: Optional[Dict] = None,
             heads: Optional[Dict[str, Dict[str, tuple]]] = None,
             intents: Optional[Dict[str, List[str]]] = None, num_nearest: int = 3,
             seed: int = 0) -> List[dict]:
    """One row per call (see :data:`COLUMNS`)."""
    keys = list(pooled)
    x = np.stack([pooled[key] for key in keys])
    if method == "kmeans":
        labels, centres = kmeans(x, k, seed)
    elif method == "agglomerative":
        labels = agglomerative(x, k)
        centres = centres_of(x, labels, k)
    else:
        raise ValueError(f"clustering method {method!r}: kmeans or agglomerative")
    conf = confidence(x, labels, centres)
    labeled = {key: v for key, v in (labeled or {}).items() if key in pooled}
    majority = {}
    for j in range(k):
        votes = Counter(labeled[key] for key, c in zip(keys, labels) if c == j and key in labeled)
        if votes:
            label, count = votes.most_common(1)[0]
            majority[j] = (label, count / sum(votes.values()))
    ref_keys = list(labeled)
    near_index = near_sims = None
    if ref_keys:
        near_index, near_sims = nearest(x, np.stack([pooled[key] for key in ref_keys]),
                                        num_nearest)
    rows = []
    for i, key in enumerate(keys):
        c = int(labels[i])
        label, purity = majority.get(c, (None, 0.0))
        call = Call(key, (transcripts or {}).get(key, ""), (heads or {}).get(key, {}),
                    (intents or {}).get(key, ()), c, label, float(conf[i]) * purity)
        proposal = rules.propose(call)
        near = "" if near_index is None else "; ".join(
            f"{ref_keys[j]}:{labeled[ref_keys[j]]}:{s:.3f}"
            for j, s in zip(near_index[i], near_sims[i]) if ref_keys[j] != key)
        rows.append({"key": key, "cluster": c, "cluster_confidence": round(float(conf[i]), 4),
                     "nearest_labeled": near, "proposed_label": proposal.label or "",
                     "confidence": round(proposal.confidence, 4), "reason": proposal.reason})
    return rows


def write_csv(rows: List[dict], path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path
