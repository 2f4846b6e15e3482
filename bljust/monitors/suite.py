"""Every monitor value from one (N, D) embedding matrix: the pure maths behind a monitor pass."""

from __future__ import annotations

import torch

from bljust.monitors.clustering import (assignment_entropy, calinski_harabasz, cross_seed_ami, davies_bouldin,
                                        kmeans_labels, silhouette)
from bljust.monitors.probe import subsample_indices
from bljust.monitors.rank import numerical_rank, rankme, singular_values

# Direction of each monitor, for pruning: True when a higher value is taken as better.
HIGHER_IS_BETTER = {"silhouette": True, "davies_bouldin": False, "calinski_harabasz": True, "ami": True,
                    "entropy": True, "rankme": True, "rank": True}


def measure(x: torch.Tensor, num_clusters: int, kmeans_seeds: list[int], silhouette_frames: int,
            rank_rtol: float, seed: int = 0, kmeans_batch_size: int = 4096) -> dict[str, float]:
    """Monitor values (unprefixed names as in HIGHER_IS_BETTER) of embeddings x: (N, D).

    The silhouette subsample is a fixed function of (N, seed), so it is the same frames at every
    pass over the same probe set.
    """
    sv = singular_values(x)
    labels = [kmeans_labels(x, num_clusters, s, kmeans_batch_size) for s in kmeans_seeds[:2]]
    sub = subsample_indices(x.shape[0], silhouette_frames, seed)
    xd = x.double()
    return {
        "silhouette": silhouette(xd[sub], labels[0][sub]),
        "davies_bouldin": davies_bouldin(xd, labels[0]),
        "calinski_harabasz": calinski_harabasz(xd, labels[0]),
        "ami": cross_seed_ami(labels[0], labels[1]),
        "entropy": assignment_entropy(labels[0], num_clusters),
        "rankme": rankme(sv),
        "rank": float(numerical_rank(sv, rank_rtol)),
    }
