"""PNG plots of the layer analysis: similarity heatmap and dendrogram.

Figures are drawn with matplotlib's object API on the Agg canvas, so nothing
here needs a display or changes the global pyplot backend.
"""

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

GROUP_COLORS = (
    "#e41a1c",
    "#377eb8",
    "#ff7f00",
    "#984ea3",
    "#4daf4a",
    "#a65628",
    "#f781bf",
    "#999999",
)
MAX_ANNOTATED_STATES = 16  # above this, cell values are unreadable


def _group_color(index):
    return GROUP_COLORS[index % len(GROUP_COLORS)]


def _runs(group):
    """Maximal runs of consecutive layers in a sorted group, as (first, last)."""
    runs = []
    for layer in sorted(group):
        if runs and layer == runs[-1][1] + 1:
            runs[-1][1] = layer
        else:
            runs.append([layer, layer])
    return runs


def _save(figure, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return str(path)


def plot_similarity_heatmap(
    similarity, groups, path, title, labels=None, measure_name="similarity"
):
    """Draw the layer-similarity matrix with the groups marked; save as PNG.

    Each group is outlined on the diagonal (one box per run of consecutive
    layers, so a non-contiguous group has several boxes of the same colour),
    and a strip above the matrix shows the group of every layer. The colour
    scale runs from the smallest value to 1; cells show 2 decimals, more
    (up to 5) when all values are close to 1.

    Arguments
    ---------
    similarity : array-like
        (n, n) matrix.
    groups : list of list of int or None
        Layer groups to mark (None: no marks).
    path : str or os.PathLike
        Output PNG file.
    title : str
        Figure title (name the teacher and the calibration size).
    labels : list of str, optional
        Tick labels; layer indices by default.
    measure_name : str
        Colour-bar label.

    Returns
    -------
    str
        The path written.

    Example
    -------
    >>> import tempfile, os
    >>> sim = np.eye(4) * 0.5 + 0.5
    >>> out = plot_similarity_heatmap(
    ...     sim, [[0, 1], [2, 3]], os.path.join(tempfile.mkdtemp(), "h.png"), "demo"
    ... )
    >>> os.path.getsize(out) > 0
    True
    """
    matrix = np.asarray(similarity, dtype=np.float64)
    size = matrix.shape[0]
    labels = [str(i) for i in range(size)] if labels is None else list(labels)
    side = max(5.0, 0.5 * size + 2.5)
    figure = Figure(figsize=(side + 1.2, side + 0.6))
    grid = figure.add_gridspec(
        2,
        2,
        height_ratios=(0.5, size),
        width_ratios=(size, 0.5),
        hspace=0.05,
        wspace=0.08,
    )
    axes = figure.add_subplot(grid[1, 0])
    strip = figure.add_subplot(grid[0, 0], sharex=axes)
    colorbar_axes = figure.add_subplot(grid[1, 1])

    # The colour range follows the data so that close values stay distinguishable.
    low = float(np.nanmin(matrix))
    low = 0.0 if low >= 1.0 else low
    spread = max(1.0 - low, 1e-5)
    decimals = min(5, max(2, math.ceil(-math.log10(spread)) + 1))
    image = axes.imshow(matrix, cmap="viridis", vmin=low, vmax=1.0, origin="upper")
    figure.colorbar(image, cax=colorbar_axes, label=measure_name)
    axes.set_xticks(range(size), labels)
    axes.set_yticks(range(size), labels)
    axes.set_xlabel("layer (0 = CNN features)")
    axes.set_ylabel("layer")
    if size <= MAX_ANNOTATED_STATES:
        fontsize = (8 if size <= 13 else 6) - (decimals > 3)
        for i in range(size):
            for j in range(size):
                value = matrix[i, j]
                color = "black" if value > low + 0.6 * (1.0 - low) else "white"
                axes.text(
                    j,
                    i,
                    f"{value:.{decimals}f}",
                    ha="center",
                    va="center",
                    fontsize=fontsize,
                    color=color,
                )

    strip.set_ylim(0, 1)
    strip.axis("off")
    for index, group in enumerate(groups or []):
        color = _group_color(index)
        for first, last in _runs(group):
            width = last - first + 1
            axes.add_patch(
                Rectangle(
                    (first - 0.5, first - 0.5),
                    width,
                    width,
                    fill=False,
                    edgecolor=color,
                    linewidth=2.5,
                )
            )
        for layer in group:
            strip.add_patch(Rectangle((layer - 0.5, 0), 1, 1, color=color, linewidth=0))
            strip.text(
                layer,
                0.5,
                f"G{index + 1}",
                ha="center",
                va="center",
                fontsize=7,
                color="white",
                fontweight="bold",
            )
    strip.set_title(title)
    return _save(figure, path)


def _link_colors(tree, groups):
    """Dendrogram colour function: a link inside one group gets the group's colour."""
    size = tree.shape[0] + 1
    group_of = {}
    for index, group in enumerate(groups or []):
        group_of.update({layer: index for layer in group})
    node_group = {layer: group_of.get(layer) for layer in range(size)}
    for row, (left, right) in enumerate(tree[:, :2].astype(int)):
        same = node_group[left] is not None and node_group[left] == node_group[right]
        node_group[size + row] = node_group[left] if same else None

    def color(node):
        """Colour of a dendrogram link: its group's, grey across groups."""
        index = node_group.get(node)
        return "#444444" if index is None else _group_color(index)

    return color


def cut_height(linkage_matrix, k):
    """Distance at which the tree splits into ``k`` groups (midway between merges).

    Arguments
    ---------
    linkage_matrix : numpy.ndarray
        SciPy linkage matrix, shape (n - 1, 4).
    k : int
        Number of groups.

    Returns
    -------
    float or None
        None when k is 1 or n (no line to draw).

    Example
    -------
    >>> z = np.array([[0, 1, 0.1, 2], [2, 3, 0.5, 3]])
    >>> cut_height(z, 2)
    0.3
    """
    heights = np.asarray(linkage_matrix)[:, 2]
    merges = len(heights)
    if k <= 1 or k > merges:
        return None
    return float((heights[merges - k] + heights[merges - k + 1]) / 2)


def plot_dendrogram(linkage_matrix, path, title, labels=None, k=None, groups=None):
    """Draw the clustering dendrogram and save it as PNG.

    Arguments
    ---------
    linkage_matrix : numpy.ndarray
        SciPy linkage matrix, shape (n - 1, 4).
    path : str or os.PathLike
        Output PNG file.
    title : str
        Figure title.
    labels : list of str, optional
        Leaf labels; layer indices by default.
    k : int, optional
        Number of groups: the cut is drawn as a dashed line (defaults to
        the number of ``groups``).
    groups : list of list of int, optional
        Layer groups: branches inside a group get the group's colour (the
        same colours as in :func:`plot_similarity_heatmap`).

    Returns
    -------
    str
        The path written.

    Example
    -------
    >>> import tempfile, os
    >>> z = np.array([[0, 1, 0.1, 2], [2, 3, 0.5, 3]])
    >>> out = plot_dendrogram(z, os.path.join(tempfile.mkdtemp(), "d.png"), "demo", k=2)
    >>> os.path.getsize(out) > 0
    True
    """
    from scipy.cluster import hierarchy

    tree = np.asarray(linkage_matrix, dtype=np.float64)
    size = tree.shape[0] + 1
    labels = [str(i) for i in range(size)] if labels is None else list(labels)
    figure = Figure(figsize=(max(6.0, 0.45 * size + 3.0), 4.8))
    axes = figure.add_subplot()
    if k is None and groups:
        k = len(groups)
    height = cut_height(tree, k) if k else None
    if size > 1:
        hierarchy.dendrogram(
            tree,
            labels=labels,
            ax=axes,
            link_color_func=_link_colors(tree, groups),
            leaf_font_size=10,
        )
    if height is not None:
        axes.axhline(height, linestyle="--", color="black", linewidth=1)
        axes.text(
            axes.get_xlim()[1], height, f" K = {k}", va="bottom", ha="right", fontsize=9
        )
    axes.set_xlabel("layer (0 = CNN features)")
    axes.set_ylabel("distance (1 - similarity)")
    axes.set_title(title)
    return _save(figure, path)
