"""A small k-means in torch, for the frame labels of masked-prediction pretraining.

Why not scikit-learn: the package does not depend on it, and a torch version
runs on the recipe's device, so labelling real LibriSpeech (millions of frames)
happens on the GPU in chunks instead of in a separate CPU job. HuBERT fits its
k-means on a subsample of frames and then labels every frame; :class:`KMeans`
does the same (``fit`` on a subsample, ``predict`` in chunks).

The algorithm is plain Lloyd iterations after k-means++ seeding; empty
clusters are re-seeded with the points farthest from their centroid.
"""

import torch

DEFAULT_CHUNK = 65536


def squared_distances(x, centroids):
    """Squared Euclidean distances between points and centroids.

    Arguments
    ---------
    x : torch.Tensor
        Points (n, dim).
    centroids : torch.Tensor
        Centroids (k, dim).

    Returns
    -------
    torch.Tensor
        (n, k), clamped at 0 (the expansion can go slightly negative).

    Example
    -------
    >>> squared_distances(torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]]))
    tensor([[25.]])
    """
    dist = (
        x.pow(2).sum(1, keepdim=True)
        - 2.0 * x @ centroids.T
        + centroids.pow(2).sum(1).unsqueeze(0)
    )
    return dist.clamp_(min=0.0)


def assign(x, centroids, chunk_size=DEFAULT_CHUNK):
    """Nearest centroid of every point, computed in chunks of points.

    Arguments
    ---------
    x : torch.Tensor
        Points (n, dim).
    centroids : torch.Tensor
        Centroids (k, dim).
    chunk_size : int
        Points per chunk (bounds the (chunk, k) distance matrix).

    Returns
    -------
    labels : torch.Tensor
        Long tensor (n,).
    distances : torch.Tensor
        Squared distance of each point to its centroid (n,).

    Example
    -------
    >>> labels, _ = assign(torch.tensor([[0.0], [9.0]]), torch.tensor([[10.0], [1.0]]))
    >>> labels.tolist()
    [1, 0]
    """
    labels, distances = [], []
    for start in range(0, x.shape[0], chunk_size):
        dist = squared_distances(x[start : start + chunk_size], centroids)
        best, index = dist.min(dim=1)
        labels.append(index)
        distances.append(best)
    if not labels:
        return (
            torch.zeros(0, dtype=torch.long, device=x.device),
            torch.zeros(0, device=x.device),
        )
    return torch.cat(labels), torch.cat(distances)


def kmeans_plus_plus(x, num_clusters, generator, chunk_size=DEFAULT_CHUNK):
    """k-means++ seeding: each new centroid is drawn with probability ~ D(x)^2.

    Arguments
    ---------
    x : torch.Tensor
        Points (n, dim), n >= num_clusters.
    num_clusters : int
        Number of centroids.
    generator : torch.Generator
        CPU generator (the draws are made on CPU for reproducibility).
    chunk_size : int
        Points per distance chunk.

    Returns
    -------
    torch.Tensor
        (num_clusters, dim) initial centroids, rows of ``x``.

    Example
    -------
    >>> x = torch.tensor([[0.0], [0.1], [10.0], [10.1]])
    >>> c = kmeans_plus_plus(x, 2, torch.Generator().manual_seed(0))
    >>> sorted(round(v) for v in c.flatten().tolist())
    [0, 10]
    """
    first = int(torch.randint(x.shape[0], (1,), generator=generator))
    centroids = [x[first]]
    closest = assign(x, x[first : first + 1], chunk_size)[1]
    for _ in range(1, num_clusters):
        weights = closest.double().cpu()
        if float(weights.sum()) <= 0:  # all points coincide with a centroid
            weights = torch.ones_like(weights)
        index = int(torch.multinomial(weights, 1, generator=generator))
        centroids.append(x[index])
        new = assign(x, x[index : index + 1], chunk_size)[1]
        closest = torch.minimum(closest, new)
    return torch.stack(centroids)


class KMeans:
    """k-means with k-means++ seeding, several restarts and chunked assignment.

    Arguments
    ---------
    num_clusters : int
        Number of clusters (HuBERT uses 100 for MFCC, 500 for iteration 2).
    max_iter : int
        Lloyd iterations per restart.
    tol : float
        Stop when the relative decrease of the inertia is below this.
    num_init : int
        Restarts; the one with the lowest inertia is kept.
    seed : int
        Seed of the seeding draws.
    chunk_size : int
        Points per distance chunk.

    Example
    -------
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.cat([torch.randn(50, 2, generator=g),
    ...                torch.randn(50, 2, generator=g) + 8])
    >>> km = KMeans(2, seed=0).fit(x)
    >>> labels = km.predict(x)
    >>> bool((labels[:50] == labels[0]).all() and (labels[50:] != labels[0]).all())
    True
    """

    def __init__(
        self,
        num_clusters,
        max_iter=100,
        tol=1e-4,
        num_init=1,
        seed=0,
        chunk_size=DEFAULT_CHUNK,
    ):
        if num_clusters < 1:
            raise ValueError(f"num_clusters must be >= 1, got {num_clusters}.")
        self.num_clusters = num_clusters
        self.max_iter = max_iter
        self.tol = tol
        self.num_init = max(1, num_init)
        self.seed = seed
        self.chunk_size = chunk_size
        self.centroids = None
        self.inertia = None

    def fit(self, x):
        """Fit the centroids on points ``x`` (n, dim); returns ``self``."""
        x = x.float()
        if x.shape[0] < self.num_clusters:
            raise ValueError(
                f"k-means needs at least {self.num_clusters} points, got "
                f"{x.shape[0]} (more audio, or fewer clusters)."
            )
        generator = torch.Generator().manual_seed(self.seed)
        best = None
        for _ in range(self.num_init):
            centroids, inertia = self._lloyd(x, generator)
            if best is None or inertia < best[1]:
                best = (centroids, inertia)
        self.centroids, self.inertia = best
        return self

    def _lloyd(self, x, generator):
        centroids = kmeans_plus_plus(x, self.num_clusters, generator, self.chunk_size)
        previous = None
        for _ in range(self.max_iter):
            labels, distances = assign(x, centroids, self.chunk_size)
            inertia = float(distances.sum())
            sums = torch.zeros_like(centroids).index_add_(0, labels, x)
            counts = torch.bincount(labels, minlength=self.num_clusters)
            empty = counts == 0
            centroids = sums / counts.clamp(min=1).unsqueeze(1).to(x.dtype)
            if empty.any():
                # Re-seed empty clusters with the worst-fitted points.
                far = distances.topk(int(empty.sum())).indices
                centroids[empty] = x[far]
            if previous is not None and previous - inertia <= self.tol * previous:
                break
            previous = inertia
        inertia = float(assign(x, centroids, self.chunk_size)[1].sum())
        return centroids, inertia

    def predict(self, x):
        """Cluster index of every point of ``x`` (n, dim)."""
        if self.centroids is None:
            raise RuntimeError("KMeans.predict called before fit (or load).")
        centroids = self.centroids.to(x.device)
        return assign(x.float(), centroids, self.chunk_size)[0]

    def state_dict(self):
        """Centroids and settings, for ``torch.save``."""
        return {
            "centroids": None if self.centroids is None else self.centroids.cpu(),
            "inertia": self.inertia,
            "num_clusters": self.num_clusters,
        }

    @classmethod
    def from_state_dict(cls, state):
        """Rebuild a fitted model from :meth:`state_dict`."""
        model = cls(state["num_clusters"])
        model.centroids = state["centroids"]
        model.inertia = state["inertia"]
        return model
