"""Clustering of pooled call embeddings (cosine geometry), with a confidence per call.

* :func:`kmeans`: spherical k-means (unit vectors, cosine), k-means++ seeding, best of
  ``n_init`` seeded runs.
* :func:`agglomerative`: average-linkage clustering on cosine distances by the nearest-neighbour
  chain algorithm (O(n²) time and memory; a few thousand calls take seconds).
* :func:`confidence`: how clearly a call sits in its cluster: ``(d2 - d1) / d2`` with d1 the
  cosine distance to its own cluster's centre and d2 to the nearest other centre (1: on its own
  centre, 0: halfway between two).
"""
from typing import Tuple

import numpy as np


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def kmeans(x: np.ndarray, k: int, seed: int = 0, n_init: int = 5,
           iterations: int = 100) -> Tuple[np.ndarray, np.ndarray]:
    """(N, D) embeddings → (labels (N,), unit centres (k, D))."""
    x = unit(x)
    if not 1 <= k <= len(x):
        raise ValueError(f"k = {k} must lie in 1..{len(x)} (the number of calls)")
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(n_init):
        centres = [x[rng.integers(len(x))]]
        for _ in range(1, k):  # k-means++: far points are likelier seeds
            d = 1 - np.max(x @ np.array(centres).T, axis=1)
            p = np.clip(d, 0, None) ** 2
            centres.append(x[rng.choice(len(x), p=p / p.sum()) if p.sum() > 0
                             else rng.integers(len(x))])
        c = np.array(centres)
        for _ in range(iterations):
            labels = np.argmax(x @ c.T, axis=1)
            new = np.array([x[labels == j].sum(0) if (labels == j).any() else c[j]
                            for j in range(k)])
            new = unit(new)
            if np.allclose(new, c):
                break
            c = new
        labels = np.argmax(x @ c.T, axis=1)
        inertia = float(np.sum(1 - np.sum(x * c[labels], axis=1)))
        if best is None or inertia < best[0]:
            best = (inertia, labels, c)
    return best[1], best[2]


def agglomerative(x: np.ndarray, k: int) -> np.ndarray:
    """(N, D) embeddings → (N,) labels 0..k-1 of average-linkage clusters (cosine distance),
    numbered by first appearance.

    The nearest-neighbour chain builds the whole tree (its merges come out of distance order),
    then the n - k closest merges are replayed in order, which cuts the tree at k clusters."""
    x = unit(x)
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"k = {k} must lie in 1..{n} (the number of calls)")
    dist = 1 - x @ x.T
    np.fill_diagonal(dist, np.inf)
    size = np.ones(n)
    active = np.ones(n, dtype=bool)
    merges, chain = [], []  # (distance, cluster kept, cluster absorbed)
    while len(merges) < n - 1:
        if not chain:
            chain.append(int(np.flatnonzero(active)[0]))
        a = chain[-1]
        row = np.where(active, dist[a], np.inf)
        b = int(np.argmin(row))
        if len(chain) > 1 and row[chain[-2]] <= row[b]:
            b = chain[-2]
        if len(chain) > 1 and b == chain[-2]:  # reciprocal nearest neighbours: merge
            chain = chain[:-2]
            merges.append((float(row[b]), a, b))
            merged = (size[a] * dist[a] + size[b] * dist[b]) / (size[a] + size[b])
            dist[a], dist[:, a] = merged, merged
            dist[a, a] = np.inf
            dist[b], dist[:, b] = np.inf, np.inf
            size[a] += size[b]
            active[b] = False
        else:
            chain.append(b)
    root = np.arange(n)

    def find(i):
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    for _, a, b in sorted(merges, key=lambda m: m[0])[:n - k]:
        root[find(b)] = find(a)
    order = {}
    return np.array([order.setdefault(find(i), len(order)) for i in range(n)])


def centres_of(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    x = unit(x)
    return unit(np.array([x[labels == j].sum(0) for j in range(k)]))


def confidence(x: np.ndarray, labels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(N,) in [0, 1]: (d2 - d1) / d2 (module docstring); 1 for a single cluster."""
    d = 1 - unit(x) @ centres.T  # (N, k) cosine distances
    if d.shape[1] < 2:
        return np.ones(len(x))
    own = d[np.arange(len(x)), labels]
    other = np.min(np.where(np.eye(d.shape[1], dtype=bool)[labels], np.inf, d), axis=1)
    return np.clip((other - own) / np.maximum(other, 1e-12), 0.0, 1.0)


def nearest(x: np.ndarray, reference: np.ndarray, top: int) -> Tuple[np.ndarray, np.ndarray]:
    """For every row of x, the indices (N, top) of its most cosine-similar reference rows and
    the similarities."""
    sims = unit(x) @ unit(reference).T
    top = min(top, reference.shape[0])
    index = np.argsort(-sims, axis=1, kind="stable")[:, :top]
    return index, np.take_along_axis(sims, index, axis=1)
