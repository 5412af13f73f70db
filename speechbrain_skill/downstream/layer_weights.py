"""Saving and plotting the learned layer weights (which layers each task uses).

Figures use matplotlib's object API on the Agg canvas: no display needed and
the global pyplot backend is left alone.
"""

import json
from pathlib import Path

from matplotlib.figure import Figure


def save_layer_weights(path, weights, **info):
    """Write the weight of each hidden state (and any extra fields) as json.

    Arguments
    ---------
    path : str or os.PathLike
        Output json file (folders created).
    weights : sequence of float or torch.Tensor
        One weight per hidden state (index 0 = projected CNN output).
    **info
        Extra json-serialisable fields (source, mode, ...).

    Returns
    -------
    dict
        What was written.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "w.json")
    >>> save_layer_weights(path, [0.25, 0.75], source="x")["weights"]
    [0.25, 0.75]
    """
    document = {"weights": [float(w) for w in weights], **info}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2))
    return document


def load_layer_weights(path):
    """Read a file written by :func:`save_layer_weights`.

    Arguments
    ---------
    path : str or os.PathLike
        The json file.

    Returns
    -------
    dict

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "w.json")
    >>> _ = save_layer_weights(path, [1.0])
    >>> load_layer_weights(path)
    {'weights': [1.0]}
    """
    return json.loads(Path(path).read_text())


def plot_layer_weights(runs, path, title="Learned layer weights"):
    """Plot layer weights: bars for one run, one line per run for several.

    Arguments
    ---------
    runs : dict
        Label -> weights (one per hidden state; runs may differ in depth).
    path : str or os.PathLike
        Output PNG (folders created).
    title : str
        Figure title.

    Returns
    -------
    str
        The PNG path.

    Example
    -------
    >>> import tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "w.png")
    >>> plot_layer_weights({"a": [0.2, 0.8], "b": [0.1, 0.3, 0.6]}, out) == out
    True
    """
    figure = Figure(figsize=(6.4, 3.6))
    axes = figure.add_subplot(1, 1, 1)
    items = [(label, [float(w) for w in weights]) for label, weights in runs.items()]
    if len(items) == 1:
        label, weights = items[0]
        axes.bar(range(len(weights)), weights, color="#377eb8", label=label)
        axes.axhline(1.0 / len(weights), color="grey", linestyle="--", linewidth=1)
    else:
        for label, weights in items:
            axes.plot(range(len(weights)), weights, marker="o", label=label)
    depth = max(len(weights) for _, weights in items)
    axes.set_xticks(range(depth))
    axes.set_xlabel("hidden state (0 = CNN projection, i = transformer layer i)")
    axes.set_ylabel("softmax weight")
    axes.set_ylim(bottom=0.0)
    axes.set_title(title)
    axes.legend(fontsize="small")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return str(path)
