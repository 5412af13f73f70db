"""Small functions for recipe yamls (``!apply:``), where HyperPyYAML has no syntax.

HyperPyYAML cannot switch a ``!new:`` object from the command line; a plain
top-level flag and :func:`choose` can (``--robust=True``).
"""


def choose(condition, if_true, if_false=None):
    """Return ``if_true`` when ``condition`` holds, else ``if_false``.

    Example
    -------
    >>> choose(True, "noisy", "clean"), choose(False, {"a": 1}, {})
    ('noisy', {})
    """
    return if_true if condition else if_false


def singleton_groups(layers):
    """Teacher layer groups of one layer each (DistilHuBERT, DPHuBERT targets).

    Example
    -------
    >>> singleton_groups([4, 8, 12])
    [[4], [8], [12]]
    """
    return [[int(layer)] for layer in layers]


def repeat_for_groups(value, groups):
    """``value`` once per group (e.g. the student layer that feeds every head).

    Example
    -------
    >>> repeat_for_groups(2, [[4], [8], [12]])
    [2, 2, 2]
    """
    return [value] * len(groups)


def reference_projection_sharing(groups):
    """DPHuBERT's projection sharing: the first target alone, the others together.

    The reference's ``distill_layers=0.4,8,12`` gives target 0 its own
    projection and targets 4, 8, 12 one shared projection.

    Example
    -------
    >>> reference_projection_sharing([[0], [4], [8], [12]])
    [[0], [1, 2, 3]]
    >>> reference_projection_sharing([[0]])
    [[0]]
    """
    rest = list(range(1, len(groups)))
    return [[0], rest] if rest else [[0]]
