"""Speaker-verification metrics from trial scores: EER and minDCF.

A trial is (label, enrolment, test) with label 1 for the same speaker. A
threshold t accepts scores >= t; the miss rate counts rejected targets, the
false-alarm rate accepted non-targets.
"""

import numpy as np


def _error_rates(scores, labels):
    """Miss and false-alarm rates at every distinct threshold, ascending.

    The first point accepts everything (miss 0, false alarm 1), the last
    rejects everything (miss 1, false alarm 0).
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        raise ValueError("Trials need both target (1) and non-target (0) labels.")
    thresholds = np.unique(scores)
    targets = np.sort(scores[labels])
    nontargets = np.sort(scores[~labels])
    # Scores below t are rejected: misses = targets < t; false alarms = nontargets >= t.
    miss = np.searchsorted(targets, thresholds, side="left") / len(targets)
    false_alarm = 1 - np.searchsorted(nontargets, thresholds, side="left") / len(
        nontargets
    )
    miss = np.concatenate([miss, [1.0]])
    false_alarm = np.concatenate([false_alarm, [0.0]])
    return miss, false_alarm


def equal_error_rate(scores, labels):
    """EER (%): where the miss and false-alarm curves cross (linear in between).

    Arguments
    ---------
    scores : sequence of float
        One score per trial (higher = more likely the same speaker).
    labels : sequence of int
        1 target, 0 non-target.

    Returns
    -------
    float

    Example
    -------
    >>> round(equal_error_rate([0.9, 0.8, 0.3, 0.5, 0.2], [1, 1, 1, 0, 0]), 4)
    33.3333
    >>> equal_error_rate([0.9, 0.8, 0.1], [1, 1, 0])
    0.0
    """
    miss, false_alarm = _error_rates(scores, labels)
    difference = miss - false_alarm  # rises from -1 to 1
    index = int(np.argmax(difference >= 0))
    if difference[index] == 0 or index == 0:
        return float(100 * miss[index])
    before, after = difference[index - 1], difference[index]
    fraction = -before / (after - before)
    rate = miss[index - 1] + fraction * (miss[index] - miss[index - 1])
    return float(100 * rate)


def min_dcf(scores, labels, p_target=0.01, c_miss=1.0, c_fa=1.0):
    """Minimum normalised detection cost over all thresholds.

    ``C(t) = c_miss * P_miss(t) * p_target + c_fa * P_fa(t) * (1 - p_target)``,
    divided by ``min(c_miss * p_target, c_fa * (1 - p_target))`` (the cost of
    the better trivial system).

    Arguments
    ---------
    scores : sequence of float
        One score per trial.
    labels : sequence of int
        1 target, 0 non-target.
    p_target, c_miss, c_fa : float
        Prior of a target trial and the two costs (VoxCeleb default:
        0.01, 1, 1).

    Returns
    -------
    float

    Example
    -------
    >>> min_dcf([0.9, 0.8, 0.7, 0.35, 0.6, 0.3, 0.2, 0.1], [1, 1, 1, 1, 0, 0, 0, 0])
    0.25
    """
    miss, false_alarm = _error_rates(scores, labels)
    cost = c_miss * miss * p_target + c_fa * false_alarm * (1 - p_target)
    default = min(c_miss * p_target, c_fa * (1 - p_target))
    return float(round(cost.min() / default, 10))


def read_trials(path):
    r"""Trial list lines ``<label> <enrolment> <test>``.

    Returns
    -------
    list of (int, str, str)

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "trials.txt")
    >>> _ = open(path, "w").write("1 a b\n0 a c\n")
    >>> read_trials(path)
    [(1, 'a', 'b'), (0, 'a', 'c')]
    """
    trials = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3 or parts[0] not in ("0", "1"):
                raise ValueError(f"{path}:{number}: expected '<0|1> <enrol> <test>'.")
            trials.append((int(parts[0]), parts[1], parts[2]))
    return trials
