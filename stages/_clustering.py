"""The offline diarizer's clustering steps (stages/_speakers.py runs them in this order, with its Settings).

- ``refined_affinity``: the windows' cosine affinity refined as in Wang et al. (2018) for d-vectors: each row
  keeps its top ``row_keep`` share, then symmetrise, diffuse and row-normalise;
- ``count_speakers``: the largest eigengap among the eigenvalues that reach ``min_share`` of the largest;
- ``kmeans``: Lloyd's k-means on the eigenvectors, seeded from KMEANS_SEED;
- ``merge_alike``: agglomerative merging of the k-means clusters while the two most alike reach
  ``similarity`` (mean cosine between their windows): the stopping threshold is learnt on the development set;
- ``absorb_small``: clusters of too few windows join the speaker they are nearest to;
- ``resegment``: Viterbi over the windows in time order with a cost for each change of speaker;
- ``linkage_clusters``: instead of the eigengap and k-means, average-linkage clustering of the windows (cosine)
  cut where clusters are less alike than ``similarity``; clusters with under ``min_share`` of the windows join
  the large cluster whose centre they are nearest to (scipy's hierarchy).
"""

from __future__ import annotations

from typing import Any

KMEANS_SEED = 0
RESEGMENT_ROUNDS = 2


def refined_affinity(emb: Any, row_keep: float) -> Any:
    import numpy as np

    affinity = emb @ emb.T
    np.fill_diagonal(affinity, 1.0)
    keep = max(1, int(np.ceil(row_keep * len(affinity))))
    floor = np.sort(affinity, axis=1)[:, -keep][:, None]
    affinity = np.where(affinity >= floor, affinity, affinity * 0.01)
    affinity = np.maximum(affinity, affinity.T)
    affinity = affinity @ affinity.T
    affinity = affinity / affinity.max(axis=1, keepdims=True)
    return (affinity + affinity.T) / 2


def count_speakers(eigenvalues: Any, max_speakers: int, min_share: float) -> int:
    """The largest eigengap (ratio of neighbours) among eigenvalues that reach ``min_share`` of the first."""
    values = [float(v) for v in eigenvalues]
    top = values[0] if values else 0.0
    candidates = [k for k in range(1, min(max_speakers, len(values) - 1) + 1) if values[k - 1] >= min_share * top]
    if not candidates or top <= 0:
        return 1
    return max(candidates, key=lambda k: values[k - 1] / max(values[k], 1e-9))


def kmeans(points: Any, k: int, rounds: int = 100) -> Any:
    """Lloyd's k-means with k-means++ seeding from a fixed seed: labels, 0..k-1."""
    import numpy as np

    rng = np.random.default_rng(KMEANS_SEED)
    centres = [points[rng.integers(len(points))]]
    for _ in range(1, k):
        dist = np.min([((points - c) ** 2).sum(1) for c in centres], axis=0)
        centres.append(points[rng.choice(len(points), p=dist / dist.sum())] if dist.sum() > 0 else points[0])
    centres = np.stack(centres)
    labels = None
    for _ in range(rounds):
        new = ((points[:, None, :] - centres[None]) ** 2).sum(2).argmin(1)
        if labels is not None and (new == labels).all():
            break
        labels = new
        centres = np.stack([points[labels == j].mean(0) if (labels == j).any() else centres[j] for j in range(k)])
    return labels


def merge_alike(emb: Any, labels: Any, similarity: float) -> Any:
    """Merge the two most alike clusters while the mean cosine between their members reaches ``similarity``;
    labels renumbered 0..k-1."""
    import numpy as np

    labels = labels.copy()
    while True:
        names = sorted(set(labels.tolist()))
        sums = {n: emb[labels == n].sum(0) for n in names}
        sizes = {n: int((labels == n).sum()) for n in names}
        pairs = [(float(sums[a] @ sums[b]) / (sizes[a] * sizes[b]), a, b) for i, a in enumerate(names)
                 for b in names[i + 1:]]
        if not pairs or max(pairs)[0] < similarity:
            break
        _, a, b = max(pairs)
        labels[labels == b] = a
    return np.unique(labels, return_inverse=True)[1]


def absorb_small(emb: Any, labels: Any, min_windows: int) -> Any:
    """Clusters with fewer than ``min_windows`` windows (smallest first) join the speaker whose centre their
    windows are nearest to, while more than one speaker is left; labels renumbered 0..k-1."""
    import numpy as np

    labels = labels.copy()
    while True:
        names, sizes = np.unique(labels, return_counts=True)
        if len(names) < 2 or sizes.min() >= min_windows:
            break
        small = names[sizes.argmin()]
        others = [n for n in names if n != small]
        centres = np.stack([emb[labels == n].mean(0) for n in others])
        mine = labels == small
        labels[mine] = np.array(others)[(emb[mine] @ centres.T).argmax(1)]
    return np.unique(labels, return_inverse=True)[1]


def resegment(emb: Any, labels: Any, penalty: float, rounds: int = RESEGMENT_ROUNDS) -> Any:
    """Viterbi over the windows in order: each scored by its cosine to each speaker's (unit) centre, a change
    of speaker costing ``penalty``; centres recomputed after each round. Labels renumbered 0..k-1."""
    import numpy as np

    for _ in range(rounds):
        names = np.unique(labels)
        if len(names) < 2 or penalty <= 0:
            break
        centres = np.stack([emb[labels == n].mean(0) for n in names])
        centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-9)
        score = emb @ centres.T
        back = np.zeros(score.shape, dtype=np.int32)
        total = score[0].copy()
        for i in range(1, len(score)):
            best = int(total.argmax())
            stay = total >= total[best] - penalty
            back[i] = np.where(stay, np.arange(len(names)), best)
            total = np.where(stay, total, total[best] - penalty) + score[i]
        path = np.zeros(len(score), dtype=np.int64)
        path[-1] = int(total.argmax())
        for i in range(len(score) - 1, 0, -1):
            path[i - 1] = back[i, path[i]]
        labels = np.unique(path, return_inverse=True)[1]
    return labels


def linkage_clusters(emb: Any, similarity: float, min_share: float, max_speakers: int) -> Any:
    """A label per window (0..k-1): the average-linkage tree cut at cosine ``similarity``; at most
    ``max_speakers`` clusters of at least ``min_share`` of the windows (and two) are speakers, and every window
    goes to the speaker whose centre it is nearest to."""
    import numpy as np
    from scipy.cluster.hierarchy import fcluster, linkage

    labels = fcluster(linkage(emb, method="average", metric="cosine"), t=1 - similarity, criterion="distance") - 1
    sizes = np.bincount(labels)
    large = [j for j in np.argsort(-sizes, kind="stable")[:max_speakers] if sizes[j] >= max(2, min_share * len(emb))]
    centres = np.stack([emb[labels == j].mean(0) for j in (large or [int(np.argmax(sizes))])])
    return np.unique((emb @ centres.T).argmax(1), return_inverse=True)[1]
