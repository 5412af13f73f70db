"""The layer-groups file (``groups.json``) that the recipes read, and group checks.

The json written by :func:`save_groups`::

    {"format": "speechbrain_skill.layer_groups", "version": 1,
     "groups": [[0, 1, 2], [3, 4], ...], "k": 4, "num_states": 13,
     "linkage": "average", "contiguous": true, "non_contiguous_groups": [],
     "metadata": {...}}

:func:`load_groups` also reads a bare json list of groups.
"""

import json
import logging
import numbers
from pathlib import Path

from speechbrain_skill.layer_groups.clustering import (
    ClusteringResult,
    non_contiguous_groups,
)

logger = logging.getLogger(__name__)

GROUPS_FORMAT = "speechbrain_skill.layer_groups"
GROUPS_VERSION = 1


def validate_groups(groups, num_states=None):
    """Check a list of layer groups (from json or a yaml file).

    Groups must be non-empty lists of distinct non-negative integers, no layer
    in two groups, and below ``num_states`` when given. They need not cover
    every layer (fixed DPHuBERT targets are groups of one layer).

    Arguments
    ---------
    groups : list of list of int
        Layer groups.
    num_states : int, optional
        Number of hidden states of the teacher.

    Returns
    -------
    list of list of int
        The groups as plain Python ints.

    Example
    -------
    >>> validate_groups([[0, 1], [4]], num_states=13)
    [[0, 1], [4]]
    >>> validate_groups([[0, 1], [1]])
    Traceback (most recent call last):
    ...
    ValueError: Layer 1 appears in more than one group.
    """
    if not isinstance(groups, (list, tuple)) or not groups:
        raise ValueError(f"Groups must be a non-empty list of lists, got {groups!r}.")
    seen = set()
    clean = []
    for group in groups:
        if not isinstance(group, (list, tuple)) or not group:
            raise ValueError(f"Each group must be a non-empty list, got {group!r}.")
        layers = []
        for layer in group:
            if isinstance(layer, bool) or not isinstance(layer, numbers.Integral):
                raise ValueError(f"Layer indices must be integers, got {layer!r}.")
            layer = int(layer)
            if layer < 0 or (num_states is not None and layer >= num_states):
                limit = "" if num_states is None else f" < {num_states}"
                raise ValueError(
                    f"Layer index {layer} out of range (0 <= index{limit})."
                )
            if layer in seen:
                raise ValueError(f"Layer {layer} appears in more than one group.")
            seen.add(layer)
            layers.append(layer)
        clean.append(layers)
    return clean


def save_groups(path, groups, metadata=None):
    """Write layer groups to the json file the recipes read.

    Arguments
    ---------
    path : str or os.PathLike
        Output json file (parent folders are created).
    groups : ClusteringResult or list of list of int
        The groups; a result also records K, the linkage, the state count
        and the contiguity.
    metadata : dict, optional
        Anything json-serialisable to keep alongside (teacher, measure,
        calibration size, ...).

    Returns
    -------
    dict
        What was written.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "groups.json")
    >>> _ = save_groups(path, [[0, 1], [2, 4], [3]], {"teacher": "tiny"})
    >>> load_groups(path)
    [[0, 1], [2, 4], [3]]
    """
    if isinstance(groups, ClusteringResult):
        result = groups
        extra = {
            "k": result.k,
            "num_states": result.num_states,
            "linkage": result.linkage,
            "tie_break": result.tie_break,
        }
        groups = result.groups
    else:
        extra = {"k": len(groups)}
    groups = validate_groups(groups)
    broken = non_contiguous_groups(groups)
    content = {
        "format": GROUPS_FORMAT,
        "version": GROUPS_VERSION,
        "groups": groups,
        **extra,
        "contiguous": not broken,
        "non_contiguous_groups": broken,
        "metadata": dict(metadata or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One line for the groups keeps the file readable for 13 layers.
    text = json.dumps({**content, "groups": "@groups@"}, indent=2)
    text = text.replace('"@groups@"', json.dumps(groups))
    path.write_text(text + "\n")
    return content


def load_groups(path, num_states=None):
    """Read layer groups written by :func:`save_groups` (or a bare json list).

    Arguments
    ---------
    path : str or os.PathLike
        The json file.
    num_states : int, optional
        Check the indices against the teacher's number of hidden states.

    Returns
    -------
    list of list of int

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "groups.json")
    >>> _ = Path(path).write_text("[[0, 1, 2], [3]]")
    >>> load_groups(path, num_states=4)
    [[0, 1, 2], [3]]
    """
    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ValueError(f"Layer groups file not found: {path}") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"Layer groups file {path} is not valid json: {err}") from err
    if isinstance(content, dict):
        if "groups" not in content:
            raise ValueError(f"Layer groups file {path} has no 'groups' entry.")
        if num_states is None:
            num_states = content.get("num_states")
        content = content["groups"]
    try:
        return validate_groups(content, num_states)
    except ValueError as err:
        raise ValueError(f"Bad layer groups in {path}: {err}") from err
