"""Cluster quality of frame embeddings: k-means, then silhouette, Davies-Bouldin, Calinski-Harabasz,
cross-seed AMI and assignment entropy.

The three quality indices are written in torch (a GPU computes them where the embeddings are);
tests check each against scikit-learn. k-means itself is scikit-learn's MiniBatchKMeans.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def kmeans_labels(x: torch.Tensor, k: int, seed: int, batch_size: int = 4096) -> torch.Tensor:
    """(N,) int64 cluster of each row of the (N, D) matrix x; mini-batch k-means with `seed`."""
    # scikit-learn is imported here, not at the top: it takes ~1.5 s, which every `bljust.train`
    # process (and its --help) paid even with the monitors off
    from sklearn.cluster import MiniBatchKMeans

    k = min(k, x.shape[0])
    km = MiniBatchKMeans(n_clusters=k, random_state=seed, batch_size=batch_size, n_init=1)
    return torch.from_numpy(km.fit_predict(x.detach().cpu().double().numpy()).astype(np.int64))


def _distances(x: torch.Tensor) -> torch.Tensor:
    """Exact pairwise Euclidean distances. cdist's matrix-product shortcut (used past 25 rows)
    leaves ~1e-7 on the diagonal, which blows up Davies-Bouldin's 1 / d(c_i, c_i)."""
    return torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")


def _onehot(labels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(N, K') membership of the K' clusters that occur, in label order."""
    _, inverse = torch.unique(labels, return_inverse=True)
    return torch.nn.functional.one_hot(inverse).to(dtype)


def _centroids(x: torch.Tensor, member: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    counts = member.sum(0)
    return (member.T @ x) / counts[:, None], counts


def silhouette(x: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean silhouette coefficient (Euclidean); NaN unless 2 <= clusters < N. Memory O(N^2):
    call it on a subsample. Points alone in their cluster score 0, as in scikit-learn."""
    member = _onehot(labels.to(x.device), x.dtype)
    n, k = member.shape
    if not 2 <= k < n:
        return math.nan
    sums = _distances(x) @ member  # (N, K'): summed distance of each point to each cluster
    counts = member.sum(0)
    own = member.bool()
    a = sums[own] / (counts[own.float().argmax(1)] - 1).clamp(min=1)
    b = (sums / counts).masked_fill(own, math.inf).min(1).values
    s = (b - a) / torch.maximum(a, b)
    s = torch.where(counts[own.float().argmax(1)] > 1, s, torch.zeros_like(s))
    return float(s.nan_to_num(0.0).mean())


def davies_bouldin(x: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over clusters of the worst (s_i + s_j) / d(c_i, c_j); lower is better."""
    member = _onehot(labels.to(x.device), x.dtype)
    if member.shape[1] < 2:
        return math.nan
    centroids, _ = _centroids(x, member)
    scatter = (member.T @ (x - member @ centroids).norm(dim=1)) / member.sum(0)
    separation = _distances(centroids)
    separation = separation.masked_fill(separation == 0, math.inf)  # scikit-learn's convention
    ratio = (scatter[:, None] + scatter[None, :]) / separation
    return float(ratio.max(1).values.mean())


def calinski_harabasz(x: torch.Tensor, labels: torch.Tensor) -> float:
    """Between- over within-cluster dispersion, each per degree of freedom; higher is better."""
    member = _onehot(labels.to(x.device), x.dtype)
    n, k = member.shape
    if not 2 <= k < n:
        return math.nan
    centroids, counts = _centroids(x, member)
    between = float((counts * (centroids - x.mean(0)).pow(2).sum(1)).sum())
    within = float((x - member @ centroids).pow(2).sum())
    return 1.0 if within == 0 else between * (n - k) / (within * (k - 1))


def assignment_entropy(labels: torch.Tensor, k: int) -> float:
    """Shannon entropy (nats) of the cluster occupancy; log(k) when every cluster is equally used."""
    p = torch.bincount(labels, minlength=k).double()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log()).sum())


def cross_seed_ami(a: torch.Tensor, b: torch.Tensor) -> float:
    """Adjusted mutual information of two clusterings of the same frames (1 = the same partition)."""
    from sklearn.metrics import adjusted_mutual_info_score

    return float(adjusted_mutual_info_score(a.numpy(), b.numpy()))
