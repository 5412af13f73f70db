"""Agglomerative clustering of layers from a layer-similarity matrix.

The distance between layers i and j is ``1 - similarity[i, j]`` (clipped at 0,
zero diagonal). SciPy's hierarchical clustering builds the tree and cuts it
into K groups. Groups are lists of layer indices, sorted, and ordered by their
smallest index; they are not forced to be contiguous, but a non-contiguous
group is logged and flagged in the saved json.

The groups are saved and read by :mod:`~speechbrain_skill.layer_groups.groups_file`.
"""

import logging
import numbers
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform

logger = logging.getLogger(__name__)

LINKAGES = ("average", "complete", "single", "ward")
SYMMETRY_TOLERANCE = 1e-6
RANGE_TOLERANCE = 1e-6


def validate_similarity(similarity, tolerance=SYMMETRY_TOLERANCE):
    """Check that a matrix is a usable similarity matrix and return it as float64.

    Arguments
    ---------
    similarity : array-like
        Square matrix with values in [-1, 1].
    tolerance : float
        Allowed asymmetry and excess over the [-1, 1] range.

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    ValueError
        If the matrix is not square, is empty, has NaN/Inf, is not symmetric
        or has values outside [-1, 1].

    Example
    -------
    >>> validate_similarity([[1.0, 0.5], [0.5, 1.0]]).shape
    (2, 2)
    >>> validate_similarity([[1.0, 0.5], [0.2, 1.0]])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: The similarity matrix is not symmetric: ... 0.3 at (0, 1).
    """
    matrix = np.asarray(similarity, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.size == 0:
        raise ValueError(
            f"The similarity matrix must be square and non-empty, got shape "
            f"{matrix.shape}."
        )
    bad = ~np.isfinite(matrix)
    if bad.any():
        rows = sorted(set(np.argwhere(bad)[:, 0].tolist()))
        raise ValueError(
            f"The similarity matrix has {int(bad.sum())} NaN/Inf values (rows "
            f"{rows}); a layer with constant features has no defined similarity."
        )
    asymmetry = np.abs(matrix - matrix.T)
    if asymmetry.max() > tolerance:
        where = np.unravel_index(int(asymmetry.argmax()), matrix.shape)
        raise ValueError(
            "The similarity matrix is not symmetric: largest |S - S^T| is "
            f"{asymmetry.max():.3g} at {tuple(int(i) for i in where)}."
        )
    low, high = matrix.min(), matrix.max()
    if low < -1 - RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise ValueError(
            f"Similarity values must lie in [-1, 1]; found range [{low:.4g}, "
            f"{high:.4g}]."
        )
    return matrix


def validate_k(k, num_states):
    """Check the number of groups against the number of states.

    Arguments
    ---------
    k : int
        Requested number of groups.
    num_states : int
        Number of hidden states (L+1).

    Returns
    -------
    int

    Example
    -------
    >>> validate_k(4, 13)
    4
    >>> validate_k(14, 13)
    Traceback (most recent call last):
    ...
    ValueError: K must be between 1 and the number of hidden states (13), got 14.
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ValueError(f"K must be an integer, got {k!r}.")
    if not 1 <= k <= num_states:
        raise ValueError(
            "K must be between 1 and the number of hidden states "
            f"({num_states}), got {k}."
        )
    return int(k)


def similarity_to_distance(similarity):
    """Condensed distance vector ``1 - similarity`` for SciPy.

    The matrix is symmetrised, its diagonal set to 0 and negative distances
    (similarities slightly above 1 from rounding) clipped to 0.

    Arguments
    ---------
    similarity : array-like
        Validated square similarity matrix.

    Returns
    -------
    numpy.ndarray
        Condensed distances, length n (n - 1) / 2.

    Example
    -------
    >>> similarity_to_distance([[1.0, 0.25], [0.25, 1.0]]).tolist()
    [0.75]
    """
    matrix = np.asarray(similarity, dtype=np.float64)
    distance = 1.0 - (matrix + matrix.T) / 2
    np.fill_diagonal(distance, 0.0)
    return squareform(np.clip(distance, 0.0, None), checks=False)


def non_contiguous_groups(groups):
    """Indices (in ``groups``) of the groups whose layers are not consecutive.

    Arguments
    ---------
    groups : list of list of int
        Groups of layer indices.

    Returns
    -------
    list of int

    Example
    -------
    >>> non_contiguous_groups([[0, 1], [2, 4], [3]])
    [1]
    """
    return [
        index
        for index, group in enumerate(groups)
        if sorted(group) != list(range(min(group), max(group) + 1))
    ]


def labels_to_groups(labels):
    """Turn per-layer cluster labels into sorted groups ordered by smallest layer.

    Arguments
    ---------
    labels : array-like of int
        Cluster label of each layer.

    Returns
    -------
    list of list of int

    Example
    -------
    >>> labels_to_groups([2, 2, 1, 3, 1])
    [[0, 1], [2, 4], [3]]
    """
    members = {}
    for layer, label in enumerate(np.asarray(labels).tolist()):
        members.setdefault(label, []).append(layer)
    return sorted(members.values(), key=lambda group: group[0])


@dataclass
class ClusteringResult:
    """Layer groups found by :func:`cluster_layers`.

    Attributes
    ----------
    groups : list of list of int
        Sorted layer indices per group, groups ordered by smallest index.
    linkage_matrix : numpy.ndarray
        SciPy linkage matrix, shape (n - 1, 4).
    k : int
        Number of groups.
    linkage : str
        Linkage method.
    num_states : int
        Number of hidden states clustered.
    non_contiguous : list of int
        Indices of the groups that are not a run of consecutive layers.
    tie_break : bool
        True when ``fcluster`` gave fewer than K clusters (tied merge
        heights) and the tree was cut with ``cut_tree`` instead.

    Example
    -------
    >>> sim = np.array([[1.0, 0.2, 0.9], [0.2, 1.0, 0.1], [0.9, 0.1, 1.0]])
    >>> result = cluster_layers(sim, k=2)
    >>> result.groups, result.contiguous, result.labels.tolist()
    ([[0, 2], [1]], False, [0, 1, 0])
    >>> print(result.summary())
    G1: layers 0, 2 (2)  [not contiguous]
    G2: layers 1 (1)
    """

    groups: list
    linkage_matrix: np.ndarray
    k: int
    linkage: str
    num_states: int
    non_contiguous: list = field(default_factory=list)
    tie_break: bool = False

    @property
    def contiguous(self):
        """Whether every group is a run of consecutive layers."""
        return not self.non_contiguous

    @property
    def labels(self):
        """Group index (0-based) of each layer."""
        labels = np.empty(self.num_states, dtype=int)
        for index, group in enumerate(self.groups):
            labels[group] = index
        return labels

    def summary(self):
        """One line per group, e.g. ``G1: layers 0-3 (4)``."""
        lines = []
        for index, group in enumerate(self.groups):
            flag = "" if index not in self.non_contiguous else "  [not contiguous]"
            lines.append(
                f"G{index + 1}: layers {format_group(group)} ({len(group)}){flag}"
            )
        return "\n".join(lines)


def format_group(group):
    """Compact text for a group of layers, e.g. ``0-3`` or ``2, 4-5``.

    Arguments
    ---------
    group : list of int
        Sorted layer indices.

    Returns
    -------
    str

    Example
    -------
    >>> format_group([2, 4, 5, 6])
    '2, 4-6'
    """
    runs = []
    for layer in sorted(group):
        if runs and layer == runs[-1][1] + 1:
            runs[-1][1] = layer
        else:
            runs.append([layer, layer])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def cluster_layers(similarity, k, linkage="average"):
    """Group layers by agglomerative clustering of ``1 - similarity``.

    Arguments
    ---------
    similarity : array-like
        (n, n) symmetric similarity matrix, values in [-1, 1].
    k : int
        Number of groups, 1 <= k <= n.
    linkage : str
        ``average`` (default), ``complete``, ``single`` or ``ward``. Ward
        assumes Euclidean distances, which ``1 - similarity`` is not in
        general: it is allowed, with a warning.

    Returns
    -------
    ClusteringResult

    Example
    -------
    >>> sim = np.array([[1.0, 0.9, 0.1], [0.9, 1.0, 0.2], [0.1, 0.2, 1.0]])
    >>> cluster_layers(sim, k=2).groups
    [[0, 1], [2]]
    """
    if linkage not in LINKAGES:
        raise ValueError(
            f"Unknown linkage '{linkage}'; choose one of {list(LINKAGES)}."
        )
    matrix = validate_similarity(similarity)
    num_states = matrix.shape[0]
    k = validate_k(k, num_states)
    if linkage == "ward":
        warnings.warn(
            "Ward linkage assumes Euclidean distances; 1 - similarity is not "
            "Euclidean in general, so the merge heights are only indicative.",
            UserWarning,
            stacklevel=2,
        )
    if num_states == 1:
        return ClusteringResult([[0]], np.zeros((0, 4)), 1, linkage, 1)
    tree = hierarchy.linkage(similarity_to_distance(matrix), method=linkage)
    labels = hierarchy.fcluster(tree, t=k, criterion="maxclust")
    tie_break = len(np.unique(labels)) != k
    if tie_break:
        # Tied merge heights: no distance threshold gives exactly K clusters.
        # cut_tree follows the merge order instead, which always gives K.
        labels = hierarchy.cut_tree(tree, n_clusters=k).ravel()
        if len(np.unique(labels)) != k:  # pragma: no cover - defensive
            raise ValueError(
                f"Could not cut the tree into {k} groups (tied distances)."
            )
        logger.warning(
            "Tied merge distances: no threshold gives exactly %d groups; the "
            "tree was cut by merge order, which breaks the ties arbitrarily.",
            k,
        )
    groups = labels_to_groups(labels)
    broken = non_contiguous_groups(groups)
    if broken:
        logger.warning(
            "Groups %s are not contiguous runs of layers: %s",
            [index + 1 for index in broken],
            [groups[index] for index in broken],
        )
    return ClusteringResult(groups, tree, k, linkage, num_states, broken, tie_break)
