"""The SUPERB leaderboard score, its reference points and published rows.

The leaderboard (superbbenchmark.org, the AAAI 2022 challenge policy in its
website source) scores an upstream by linearly rescaling every metric
between two reference points, the FBANK baseline (0) and the best result
known when the policy was set (SOTA, 1000)::

    score(metric) = 1000 * (value - FBANK) / (SOTA - FBANK)

averages the metrics of a task (slot filling: slot-type F1 and slot-value
CER) and then the tasks. Error rates get the same formula: their SOTA is
below their FBANK, so a lower error scores higher. QbE's MTWV enters
multiplied by 100.

A run that lacks some of the ten tasks gets a *partial* score (the mean over
the tasks it has), which is not comparable with the leaderboard; so is any
score computed on the built-in analogs instead of the real datasets.
"""

from dataclasses import dataclass

SUPERB_TASKS = ("pr", "asr", "ks", "qbe", "sid", "asv", "sd", "ic", "sf", "er")
SCORE_SOURCE = (
    "SUPERB leaderboard scoring policy (superbbenchmark.org website source, "
    "AAAI 2022 SUPERB challenge)"
)


@dataclass(frozen=True)
class ReferencePoint:
    """One metric of a task with its FBANK and SOTA values.

    ``scale`` converts our stored value to the leaderboard's unit (QbE's
    MTWV is stored as a fraction and scored x100).
    """

    task: str
    metric: str
    fbank: float
    sota: float
    scale: float = 1.0

    def score(self, value):
        """1000 x (value - FBANK) / (SOTA - FBANK).

        Example
        -------
        >>> point = ReferencePoint("pr", "PER", 82.01, 3.53)
        >>> round(point.score(3.53)), round(point.score(82.01))
        (1000, 0)
        """
        return 1000.0 * (value * self.scale - self.fbank) / (self.sota - self.fbank)


REFERENCE_POINTS = (
    ReferencePoint("pr", "PER", 82.01, 3.53),
    ReferencePoint("asr", "WER", 23.18, 3.62),
    ReferencePoint("ks", "accuracy", 41.38, 96.66),
    ReferencePoint("qbe", "MTWV", 0.58, 7.36, scale=100.0),
    ReferencePoint("sid", "accuracy", 20.06, 90.3),
    ReferencePoint("asv", "EER", 9.56, 5.11),
    ReferencePoint("sd", "DER", 10.05, 5.62),
    ReferencePoint("ic", "accuracy", 9.65, 98.76),
    ReferencePoint("sf", "slot_type_f1", 69.64, 89.81),
    ReferencePoint("sf", "slot_value_cer", 52.94, 21.76),
    ReferencePoint("er", "accuracy", 48.24, 67.62),
)

# Published SUPERB results (960 h distillation), from the DPHuBERT repository's
# result images and the SUPERB leaderboard; values in our units (MTWV as a
# fraction, everything else in %).
PUBLISHED_SOURCE = (
    "the DPHuBERT repository's (pyf98/DPHuBERT) result tables and the SUPERB "
    "leaderboard"
)
PUBLISHED = {
    "WavLM Base+": dict(
        params=94.70e6,
        score=1106,
        metrics=dict(
            pr={"PER": 3.92},
            asr={"WER": 5.59},
            ks={"accuracy": 97.37},
            qbe={"MTWV": 0.0988},
            sid={"accuracy": 89.42},
            asv={"EER": 4.07},
            sd={"DER": 3.50},
            ic={"accuracy": 99.00},
            sf={"slot_type_f1": 90.58, "slot_value_cer": 21.20},
            er={"accuracy": 68.65},
        ),
    ),
    "DPWavLM": dict(
        params=23.59e6,
        score=926,
        metrics=dict(
            pr={"PER": 8.22},
            asr={"WER": 10.19},
            ks={"accuracy": 96.27},
            qbe={"MTWV": 0.0874},
            sid={"accuracy": 82.11},
            asv={"EER": 5.98},
            sd={"DER": 5.53},
            ic={"accuracy": 98.58},
            sf={"slot_type_f1": 87.68, "slot_value_cer": 26.11},
            er={"accuracy": 65.24},
        ),
    ),
    "DPHuBERT": dict(
        params=23.59e6,
        score=866,
        metrics=dict(
            pr={"PER": 9.67},
            asr={"WER": 10.47},
            ks={"accuracy": 96.36},
            qbe={"MTWV": 0.0693},
            sid={"accuracy": 76.83},
            asv={"EER": 5.84},
            sd={"DER": 5.92},
            ic={"accuracy": 97.92},
            sf={"slot_type_f1": 86.86, "slot_value_cer": 28.26},
            er={"accuracy": 63.16},
        ),
    ),
    "DistilHuBERT": dict(
        params=23.49e6,
        score=717,
        metrics=dict(
            pr={"PER": 16.27},
            asr={"WER": 13.37},
            ks={"accuracy": 95.98},
            qbe={"MTWV": 0.0511},
            sid={"accuracy": 73.54},
            asv={"EER": 8.55},
            sd={"DER": 6.19},
            ic={"accuracy": 94.99},
            sf={"slot_type_f1": 82.57, "slot_value_cer": 35.59},
            er={"accuracy": 63.02},
        ),
    ),
}


def reference_points(task):
    """The reference points of one task (SF has two).

    Example
    -------
    >>> [point.metric for point in reference_points("sf")]
    ['slot_type_f1', 'slot_value_cer']
    """
    points = [point for point in REFERENCE_POINTS if point.task == task]
    if not points:
        raise KeyError(f"Unknown SUPERB task '{task}'; known: {SUPERB_TASKS}")
    return points


def task_score(task, metrics):
    """Mean of the rescaled metrics of one task; None when one is missing.

    Arguments
    ---------
    task : str
        A SUPERB task (see :data:`SUPERB_TASKS`).
    metrics : dict
        Metric name -> value, in our units (see :data:`PUBLISHED`).

    Returns
    -------
    float or None

    Example
    -------
    >>> round(task_score("sf", {"slot_type_f1": 89.81, "slot_value_cer": 52.94}))
    500
    >>> task_score("sf", {"slot_type_f1": 89.81}) is None
    True
    """
    points = reference_points(task)
    values = [metrics.get(point.metric) for point in points]
    if any(value is None for value in values):
        return None
    return sum(point.score(v) for point, v in zip(points, values)) / len(points)


def superb_score(results):
    """The SUPERB score of one upstream.

    Arguments
    ---------
    results : dict
        Task -> {metric name: value}; tasks outside SUPERB are ignored.

    Returns
    -------
    dict
        ``score`` (mean over the scored tasks, None when none), ``tasks``
        (task -> task score), ``missing`` (SUPERB tasks without a result)
        and ``complete`` (all ten tasks scored: comparable with the
        leaderboard if the data were the real datasets).

    Example
    -------
    >>> result = superb_score({"pr": {"PER": 3.53}, "ks": {"accuracy": 41.38}})
    >>> result["score"], result["complete"], len(result["missing"])
    (500.0, False, 8)
    """
    scores = {}
    for task in SUPERB_TASKS:
        if task in results and results[task] is not None:
            value = task_score(task, results[task])
            if value is not None:
                scores[task] = value
    missing = [task for task in SUPERB_TASKS if task not in scores]
    mean = sum(scores.values()) / len(scores) if scores else None
    return {
        "score": mean,
        "tasks": scores,
        "missing": missing,
        "complete": not missing,
    }
