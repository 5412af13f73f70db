"""Metrics of the SUPERB tasks added here: PER, slot filling, MTWV.

* :func:`edit_distance` / :func:`error_rate`: Levenshtein distance and the
  corpus error rate (total edits / total reference tokens, %), the PER of
  phoneme recognition when the tokens are phones.
* :func:`parse_slots`, :func:`slot_type_f1`, :func:`slot_value_cer`: SUPERB's
  slot-filling metrics on slot-tagged text, where a slot value is written
  between ``B-<type>`` and ``E-<type>`` words (``play B-artist queen E-artist``).
  Slot-type F1 is the F1 between the sets of slot types of hypothesis and
  reference, per utterance, averaged over utterances (1 when both have no
  slot). Slot-value CER pairs every reference value with the hypothesis value
  of the same type that has the fewest character errors (the empty string
  when the hypothesis lacks the type) and is the corpus CER over these pairs.
* :func:`term_weighted_value` / :func:`maximum_term_weighted_value`: NIST's
  term-weighted value as the QUESST 2014 scorer applies it to query-by-example
  detection, with trials = (query, document) pairs.
"""

import math
import re

SLOT_PATTERN = re.compile(r"B-(\S+) (.+?) E-\1(?=\s|$)")

# QUESST 2014 evaluation plan (MediaEval 2014): TWV costs and prior.
QUESST_P_TARGET = 0.0008
QUESST_C_MISS = 100.0
QUESST_C_FA = 1.0


def edit_distance(hypothesis, reference):
    """Minimum insertions + deletions + substitutions from one sequence to another.

    Example
    -------
    >>> edit_distance("kitten", "sitting")
    3
    >>> edit_distance(["AH0", "B"], ["AH0", "B", "K"])
    1
    """
    previous = list(range(len(reference) + 1))
    for i, hyp in enumerate(hypothesis, start=1):
        current = [i]
        for j, ref in enumerate(reference, start=1):
            current.append(
                min(
                    previous[j] + 1,
                    current[j - 1] + 1,
                    previous[j - 1] + (hyp != ref),
                )
            )
        previous = current
    return previous[-1]


def error_rate(hypotheses, references):
    """Corpus error rate in %: total edits / total reference tokens.

    Arguments
    ---------
    hypotheses, references : list of sequences
        Token sequences (lists of phones, strings of characters, ...).

    Returns
    -------
    float

    Example
    -------
    >>> error_rate([["HH", "AH0"], ["K"]], [["HH", "AH1", "L"], ["K"]])
    50.0
    """
    edits = sum(edit_distance(h, r) for h, r in zip(hypotheses, references))
    total = sum(len(r) for r in references)
    if total == 0:
        raise ValueError("The references have no tokens.")
    return 100.0 * edits / total


def parse_slots(text):
    """Slot type -> list of values of a slot-tagged text.

    Example
    -------
    >>> parse_slots("play B-artist the beatles E-artist on B-service spotify E-service")
    {'artist': ['the beatles'], 'service': ['spotify']}
    >>> parse_slots("B-artist queen")
    {}
    """
    slots = {}
    for slot_type, value in SLOT_PATTERN.findall(" ".join(text.split())):
        value = " ".join(w for w in value.split() if not re.match(r"[BE]-\S+$", w))
        slots.setdefault(slot_type, []).append(value)
    return slots


def slot_type_f1(hypotheses, references):
    """Slot-type F1 in %, averaged over utterances.

    Example
    -------
    >>> hyp = ["B-city paris E-city B-day monday E-day", "hello", "B-a x E-a"]
    >>> ref = ["B-city paris E-city", "hello", "B-b x E-b"]
    >>> round(slot_type_f1(hyp, ref), 4)  # (2/3 + 1 + 0) / 3
    55.5556
    """
    scores = []
    for hyp, ref in zip(hypotheses, references):
        hyp_types, ref_types = set(parse_slots(hyp)), set(parse_slots(ref))
        if not hyp_types and not ref_types:
            scores.append(1.0)
            continue
        common = len(hyp_types & ref_types)
        if common == 0:
            scores.append(0.0)
            continue
        precision, recall = common / len(hyp_types), common / len(ref_types)
        scores.append(2 * precision * recall / (precision + recall))
    return 100.0 * sum(scores) / len(scores)


def slot_value_cer(hypotheses, references):
    """Slot-value character error rate in % (best same-type value per reference value).

    Example
    -------
    >>> ref = "B-city paris E-city B-day monday E-day"
    >>> round(slot_value_cer(["B-city pari E-city"], [ref]), 4)  # (1 + 6) / 11
    63.6364
    """
    pairs = []
    for hyp, ref in zip(hypotheses, references):
        hyp_slots = parse_slots(hyp)
        for slot_type, values in parse_slots(ref).items():
            for value in values:
                candidates = hyp_slots.get(slot_type, [""])
                best = min(candidates, key=lambda c: edit_distance(c, value))
                pairs.append((best, value))
    if not pairs:
        return 0.0
    return error_rate([p[0] for p in pairs], [p[1] for p in pairs])


def twv_beta(p_target=QUESST_P_TARGET, c_miss=QUESST_C_MISS, c_fa=QUESST_C_FA):
    """The false-alarm weight beta = C_fa / C_miss x (1 / P_target - 1).

    Example
    -------
    >>> round(twv_beta(), 2)
    12.49
    """
    return c_fa / c_miss * (1.0 / p_target - 1.0)


def term_weighted_value(scores, truth, threshold, beta=None):
    """TWV at one decision threshold (detection when score >= threshold).

    Arguments
    ---------
    scores : dict
        (query, document) -> detection score, one per trial.
    truth : set
        The (query, document) trials where the query occurs.
    threshold : float
        Decision threshold.
    beta : float, optional
        False-alarm weight (default: :func:`twv_beta`).

    Returns
    -------
    float
        1 - mean over queries with at least one occurrence of
        (P_miss + beta x P_fa); P_miss = misses / occurrences and
        P_fa = false alarms / non-target trials of that query.

    Example
    -------
    >>> scores = {("q", "d1"): 0.9, ("q", "d2"): 0.5, ("q", "d3"): 0.1}
    >>> term_weighted_value(scores, {("q", "d1")}, 0.8, beta=10)
    1.0
    >>> term_weighted_value(scores, {("q", "d1")}, 0.4, beta=10)  # 1 - 10 x 1/2
    -4.0
    """
    beta = twv_beta() if beta is None else beta
    queries = sorted({query for query, _ in scores})
    losses = []
    for query in queries:
        trials = [(key, value) for key, value in scores.items() if key[0] == query]
        targets = sum(1 for key, _ in trials if key in truth)
        if targets == 0:
            continue  # queries without occurrences are not scored
        nontargets = len(trials) - targets
        misses = sum(1 for key, v in trials if key in truth and v < threshold)
        alarms = sum(1 for key, v in trials if key not in truth and v >= threshold)
        p_fa = alarms / nontargets if nontargets else 0.0
        losses.append(misses / targets + beta * p_fa)
    if not losses:
        raise ValueError("No query has an occurrence among the trials.")
    return 1.0 - sum(losses) / len(losses)


def maximum_term_weighted_value(scores, truth, beta=None):
    """MTWV: the best TWV over all thresholds, and that threshold.

    The candidate thresholds are every trial score and +inf (no detection,
    TWV = 0), so the MTWV is never below 0.

    Returns
    -------
    mtwv : float
    threshold : float

    Example
    -------
    >>> scores = {("q", "d1"): 0.9, ("q", "d2"): 0.5, ("q", "d3"): 0.1,
    ...           ("r", "d1"): 0.2, ("r", "d2"): 0.8, ("r", "d3"): 0.3}
    >>> truth = {("q", "d1"), ("r", "d3")}
    >>> maximum_term_weighted_value(scores, truth, beta=1.0)
    (0.5, 0.3)
    """
    best = (0.0, math.inf)
    for threshold in sorted(set(scores.values())):
        value = term_weighted_value(scores, truth, threshold, beta)
        if value > best[0]:
            best = (value, threshold)
    return best
