"""Speaker diarization on a frozen upstream (SUPERB SD): LSTM + PIT, DER.

* RTTM in and out (:func:`read_rttm`, :func:`write_rttm`); frame labels from
  segments and segments from frame decisions, at the upstream frame rate
  (:func:`frame_labels`, :func:`frames_to_segments`).
* :func:`diarization_error`: the DER of one recording from reference and
  hypothesis segments: (missed + false-alarm + confused speaker time) /
  reference speaker time, overlapped speech scored, with the optimal one-to-one
  speaker mapping (largest total overlap, as NIST md-eval) and an optional
  collar around every reference boundary (SUPERB: 0, dscore's default).
* :class:`LSTMDiarizationHead` (SUPERB: one LSTM layer of 512 units and a
  linear layer to one activity logit per speaker) and :func:`pit_bce_loss`.
* :class:`DiarizationBrain`: the SUPERB scoring rule, best DER over decision
  thresholds 0.3-0.7 and median filters of 1 and 11 frames
  (``diarization/score.sh``), with the DER at threshold 0.5 beside it.
"""

import itertools
import json

import numpy as np
import speechbrain as sb
import torch
from scipy.ndimage import median_filter
from scipy.optimize import linear_sum_assignment

from speechbrain_skill.downstream.brain import DownstreamBrain
from speechbrain_skill.downstream.heads import absolute_lengths

FRAME_SECONDS = 0.02  # upstream hop: 320 samples at 16 kHz
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
MEDIANS = (1, 11)


def read_rttm(path):
    r"""Speaker turns of an RTTM file (``SPEAKER <rec> <chan> <start> <dur>`` lines).

    Returns
    -------
    dict
        Recording -> list of (speaker, start, end) in seconds.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "ref.rttm")
    >>> _ = open(path, "w").write("SPEAKER r1 1 0.50 1.25 <NA> <NA> A <NA> <NA>\n")
    >>> read_rttm(path)
    {'r1': [('A', 0.5, 1.75)]}
    """
    segments = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            parts = line.split()
            if not parts or parts[0] != "SPEAKER":
                continue
            if len(parts) < 8:
                raise ValueError(f"{path}:{number}: not an RTTM SPEAKER line.")
            start, duration = float(parts[3]), float(parts[4])
            segments.setdefault(parts[1], []).append(
                (parts[7], start, round(start + duration, 6))
            )
    return segments


def write_rttm(path, segments):
    """Write ``{recording: [(speaker, start, end)]}`` as RTTM SPEAKER lines."""
    with open(path, "w", encoding="utf-8") as handle:
        for recording, items in segments.items():
            for speaker, start, end in sorted(items, key=lambda s: (s[1], s[0])):
                handle.write(
                    f"SPEAKER {recording} 1 {start:.3f} {end - start:.3f} "
                    f"<NA> <NA> {speaker} <NA> <NA>\n"
                )


def frame_labels(segments, num_frames, speakers, frame_seconds=FRAME_SECONDS):
    """Speaker activity per frame: frame i is active when its centre is in a segment.

    Arguments
    ---------
    segments : list of (str, float, float)
        (speaker, start, end) in seconds.
    num_frames : int
        Frames of the recording.
    speakers : list of str
        Speaker order of the columns.
    frame_seconds : float
        Frame hop.

    Returns
    -------
    torch.Tensor
        (num_frames, len(speakers)) of 0. / 1.

    Example
    -------
    >>> frame_labels([("A", 0.0, 0.05), ("B", 0.04, 0.1)], 5, ["A", "B"]).T.tolist()
    [[1.0, 1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0, 1.0]]
    """
    centres = (torch.arange(num_frames, dtype=torch.float64) + 0.5) * frame_seconds
    labels = torch.zeros(num_frames, len(speakers))
    for speaker, start, end in segments:
        column = speakers.index(speaker)
        active = (centres >= start) & (centres < end)
        labels[active, column] = 1.0
    return labels


def frames_to_segments(activity, speakers, frame_seconds=FRAME_SECONDS):
    """Runs of active frames -> (speaker, start, end); frame i spans [i, i + 1) hops.

    Example
    -------
    >>> frames_to_segments(np.array([[1, 0], [1, 1], [0, 1]]), ["x", "y"])
    [('x', 0.0, 0.04), ('y', 0.02, 0.06)]
    """
    segments = []
    activity = np.asarray(activity).astype(bool)
    for column, speaker in enumerate(speakers):
        padded = np.concatenate([[False], activity[:, column], [False]])
        changes = np.flatnonzero(padded[1:] != padded[:-1])
        for start, end in zip(changes[::2], changes[1::2]):
            segments.append(
                (
                    speaker,
                    round(float(start) * frame_seconds, 6),
                    round(float(end) * frame_seconds, 6),
                )
            )
    return segments


def _activity(segments, times):
    """Speaker -> boolean activity at each time point."""
    active = {}
    for speaker, start, end in segments:
        mask = active.setdefault(speaker, np.zeros(len(times), dtype=bool))
        mask |= (times >= start) & (times < end)
    return active


def diarization_error(reference, hypothesis, collar=0.0):
    """Missed, false-alarm and confused speaker time of one recording, and the DER.

    Exact for segment boundaries: time is cut at every boundary into pieces
    on which each speaker is either active or not. With the mapping of
    hypothesis to reference speakers that maximises their total overlap, a
    piece with ``n_ref`` reference and ``n_hyp`` hypothesis speakers of which
    ``n_correct`` are mapped pairs counts ``max(0, n_ref - n_hyp)`` missed,
    ``max(0, n_hyp - n_ref)`` false-alarm and ``min(n_ref, n_hyp) - n_correct``
    confused speakers, times its duration. ``collar`` seconds on both sides of
    every reference boundary are not scored.

    Arguments
    ---------
    reference, hypothesis : list of (str, float, float)
        (speaker, start, end) in seconds.
    collar : float
        Half-width of the unscored zone around reference boundaries.

    Returns
    -------
    dict
        ``missed``, ``false_alarm``, ``confusion``, ``scored`` (reference
        speaker time) in seconds, and ``DER`` in percent.

    Example
    -------
    >>> ref = [("A", 0, 10), ("B", 5, 15)]
    >>> diarization_error(ref, [("x", 0, 10), ("y", 10, 15)])["DER"]  # B missed 5-10
    25.0
    """
    bounds = {0.0}
    for _, start, end in [*reference, *hypothesis]:
        bounds.update((float(start), float(end)))
    if collar > 0:
        for _, start, end in reference:
            for edge in (start, end):
                bounds.update((edge - collar, edge + collar))
    bounds = np.array(sorted(b for b in bounds if b >= 0))
    if len(bounds) < 2:
        return dict(missed=0.0, false_alarm=0.0, confusion=0.0, scored=0.0, DER=0.0)
    mids = (bounds[:-1] + bounds[1:]) / 2
    widths = np.diff(bounds)
    if collar > 0:
        for _, start, end in reference:
            for edge in (start, end):
                widths[np.abs(mids - edge) < collar] = 0.0
    ref = _activity(reference, mids)
    hyp = _activity(hypothesis, mids)
    ref_names, hyp_names = sorted(ref), sorted(hyp)
    overlap = np.array(
        [[np.sum(widths * (ref[r] & hyp[h])) for h in hyp_names] for r in ref_names]
    ).reshape(len(ref_names), len(hyp_names))
    pairs = []
    if overlap.size:
        rows, cols = linear_sum_assignment(-overlap)
        pairs = [(ref_names[r], hyp_names[c]) for r, c in zip(rows, cols)]
    n_ref = sum(ref[r].astype(int) for r in ref_names) if ref_names else 0 * mids
    n_hyp = sum(hyp[h].astype(int) for h in hyp_names) if hyp_names else 0 * mids
    n_correct = (
        sum((ref[r] & hyp[h]).astype(int) for r, h in pairs) if pairs else 0 * mids
    )
    missed = float(np.sum(widths * np.maximum(0, n_ref - n_hyp)))
    false_alarm = float(np.sum(widths * np.maximum(0, n_hyp - n_ref)))
    confusion = float(np.sum(widths * (np.minimum(n_ref, n_hyp) - n_correct)))
    scored = float(np.sum(widths * n_ref))
    der = 100 * (missed + false_alarm + confusion) / scored if scored else 0.0
    return dict(
        missed=missed,
        false_alarm=false_alarm,
        confusion=confusion,
        scored=scored,
        DER=der,
    )


def corpus_der(pairs, collar=0.0):
    """DER (%) over recordings: summed error times over summed reference time.

    Arguments
    ---------
    pairs : iterable of (reference, hypothesis)
        Segment lists of each recording.
    collar : float
        See :func:`diarization_error`.

    Returns
    -------
    float

    Example
    -------
    >>> corpus_der([([("A", 0, 10)], [("x", 0, 10)]), ([("A", 0, 10)], [])])
    50.0
    """
    totals = dict(missed=0.0, false_alarm=0.0, confusion=0.0, scored=0.0)
    for reference, hypothesis in pairs:
        result = diarization_error(reference, hypothesis, collar)
        for key in totals:
            totals[key] += result[key]
    errors = totals["missed"] + totals["false_alarm"] + totals["confusion"]
    return 100 * errors / totals["scored"] if totals["scored"] else 0.0


def pit_bce_loss(logits, labels, lengths):
    """Permutation-invariant BCE: each utterance takes its best speaker order.

    Arguments
    ---------
    logits, labels : torch.Tensor
        (batch, frames, speakers).
    lengths : torch.Tensor
        Real frames per utterance.

    Returns
    -------
    torch.Tensor
        Mean over utterances of the per-frame BCE of the best permutation.

    Example
    -------
    >>> labels = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    >>> logits = 20 * (2 * labels - 1)
    >>> swapped = logits.flip(-1)
    >>> float(pit_bce_loss(swapped, labels, torch.tensor([2]))) < 1e-6
    True
    """
    frames = torch.arange(logits.shape[1], device=logits.device)
    mask = (frames[None] < lengths[:, None].to(logits.device)).to(logits.dtype)
    losses = []
    for order in itertools.permutations(range(labels.shape[-1])):
        bce = torch.nn.functional.binary_cross_entropy_with_logits(
            logits.float(), labels[..., list(order)].float(), reduction="none"
        ).mean(-1)
        losses.append((bce * mask).sum(1) / mask.sum(1).clamp(min=1))
    return torch.stack(losses).min(0).values.mean()


class LSTMDiarizationHead(torch.nn.Module):
    """LSTM over the frames, linear layer to one activity logit per speaker.

    Arguments
    ---------
    input_size : int
        Upstream feature dimension.
    num_speakers : int
        Output speakers (Libri2Mix: 2).
    hidden_size, num_layers : int
        LSTM size (SUPERB: 512, 1; unidirectional).

    Example
    -------
    >>> head = LSTMDiarizationHead(8, hidden_size=4)
    >>> head(torch.randn(2, 7, 8), torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 7, 2])
    """

    def __init__(self, input_size, num_speakers=2, hidden_size=512, num_layers=1):
        super().__init__()
        self.lstm = torch.nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)
        self.linear = torch.nn.Linear(hidden_size, num_speakers)

    def forward(self, feats, lens):
        """Logits (batch, frames, speakers)."""
        hidden, _ = self.lstm(feats)
        return self.linear(hidden)


def grid_der(items, collar=0.0):
    """DER at every (threshold, median) of SUPERB's grid.

    As s3prl's ``make_rttm.py``: frames above the threshold are active, then
    a median filter over time (zeros past both ends, as ``scipy.signal.medfilt``)
    smooths the decisions.

    Arguments
    ---------
    items : list of (numpy.ndarray, list)
        (frame probabilities (frames, speakers), reference segments).
    collar : float
        See :func:`diarization_error`.

    Returns
    -------
    dict
        (threshold, median) -> DER (%).
    """
    results = {}
    for threshold in THRESHOLDS:
        for median in MEDIANS:
            pairs = []
            for probs, reference in items:
                decisions = probs > threshold
                if median > 1:
                    decisions = median_filter(
                        decisions.astype(np.uint8), size=(median, 1), mode="constant"
                    )
                names = [f"hyp{i}" for i in range(probs.shape[1])]
                pairs.append((reference, frames_to_segments(decisions, names)))
            results[(threshold, median)] = corpus_der(pairs, collar)
    return results


class DiarizationBrain(DownstreamBrain):
    """PIT training; DER by SUPERB's rule on valid and test.

    Modules: ``upstream`` and ``head`` (:class:`LSTMDiarizationHead`).
    Batches carry ``sig`` and ``segments`` (json of [speaker, start, end]).
    Hyperparameter ``collar`` (seconds, SUPERB: 0).
    """

    metric = "DER"
    higher_is_better = False

    def silent_batch(self):
        """One second of silence without speakers (zero-loss DDP step)."""
        return super().silent_batch(segments="[]")

    def compute_forward(self, batch, stage):
        """Logits (batch, frames, speakers) and real frames per recording."""
        batch = batch.to(self.device)
        feats, feat_lens = self.upstream_features(batch)
        logits = self.modules.head(feats, feat_lens)
        return logits, absolute_lengths(feat_lens, feats.shape[1])

    def compute_objectives(self, predictions, batch, stage):
        """PIT BCE over the real frames; probabilities kept outside training."""
        logits, lengths = predictions
        num_speakers = logits.shape[-1]
        references = [json.loads(text) for text in batch.segments]
        labels = []
        for segments in references:
            speakers = sorted({s[0] for s in segments})[:num_speakers]
            speakers += [None] * (num_speakers - len(speakers))
            kept = [s for s in segments if s[0] in speakers]
            labels.append(frame_labels(kept, logits.shape[1], speakers))
        labels = torch.stack(labels).to(logits.device)
        if stage != sb.Stage.TRAIN:
            probs = torch.sigmoid(logits.detach().float()).cpu().numpy()
            for row, count in enumerate(lengths.tolist()):
                reference = [tuple(s) for s in references[row]]
                self.outputs.append((probs[row, :count], reference))
        return pit_bce_loss(logits, labels, lengths)

    def reset_metrics(self, stage):
        """Forget the previous stage's outputs."""
        self.outputs = []

    def summarize_metrics(self, stage):
        """Best DER over SUPERB's grid, its setting, and the DER at threshold 0.5."""
        grid = grid_der(self.outputs, self.hparams.collar)
        (threshold, median), best = min(grid.items(), key=lambda item: item[1])
        return {
            "DER": round(best, 4),
            "threshold": threshold,
            "median": median,
            "DER_at_0.5": round(grid[(0.5, 1)], 4),
            "recordings": len(self.outputs),
        }
