r"""Layer similarity + clustering of a teacher, end to end (SKILL stages 2-3).

:func:`run_layer_analysis` computes the similarity matrix of all hidden states
of a frozen teacher over a calibration set, clusters the layers into K groups
and writes into one folder:

=========================  ==================================================
``similarity.npy``         (L+1, L+1) float64 matrix
``similarity.csv``         the same, with layer indices as header / first column
``groups.json``            groups + settings (read by the recipes)
``similarity_heatmap.png`` matrix with the groups outlined
``dendrogram.png``         the clustering tree, cut at K
``summary.txt``            the text summary also printed by the command line
=========================  ==================================================

Command line (researchers who only want the analysis)::

    python -m speechbrain_skill.layer_groups \
        --teacher microsoft/wavlm-base-plus --manifest train.csv \
        --output results/layer_analysis --num_utterances 1000 --k 4
"""

import csv
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speechbrain_skill.layer_groups.accumulators import MEASURES
from speechbrain_skill.layer_groups.clustering import (
    LINKAGES,
    ClusteringResult,
    cluster_layers,
    validate_k,
)
from speechbrain_skill.layer_groups.groups_file import save_groups
from speechbrain_skill.layer_groups.plots import (
    plot_dendrogram,
    plot_similarity_heatmap,
)
from speechbrain_skill.layer_groups.similarity import (
    SimilarityStats,
    as_teacher,
    compute_layer_similarity,
)
from speechbrain_skill.training.batch_skipping import merge_skipped

logger = logging.getLogger(__name__)

OUTPUT_FILES = {
    "matrix_npy": "similarity.npy",
    "matrix_csv": "similarity.csv",
    "groups": "groups.json",
    "heatmap": "similarity_heatmap.png",
    "dendrogram": "dendrogram.png",
    "summary": "summary.txt",
}
MEASURE_LABELS = {
    "cka": "linear CKA",
    "cka_minibatch": "linear CKA (minibatch, unbiased)",
    "cosine": "mean cosine",
}


@dataclass
class LayerAnalysisResult:
    """Everything :func:`run_layer_analysis` computed and wrote.

    Attributes
    ----------
    similarity : numpy.ndarray
        (L+1, L+1) similarity matrix.
    clustering : ClusteringResult
        Groups and linkage matrix.
    stats : SimilarityStats
        Calibration size and time.
    files : dict
        Output name -> path (keys of :data:`OUTPUT_FILES`).
    metadata : dict
        Settings and calibration facts, as saved in ``groups.json``.

    Example
    -------
    >>> sim = np.array([[1.0, 0.9, 0.1], [0.9, 1.0, 0.2], [0.1, 0.2, 1.0]])
    >>> stats = SimilarityStats(1, 2, 100, 100, 1.0)
    >>> result = LayerAnalysisResult(sim, cluster_layers(sim, 2), stats)
    >>> result.groups
    [[0, 1], [2]]
    """

    similarity: np.ndarray
    clustering: ClusteringResult
    stats: SimilarityStats
    files: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    @property
    def groups(self):
        """Layer groups (list of lists of int)."""
        return self.clustering.groups

    def summary(self):
        """Short text summary: settings, groups, output folder."""
        meta = self.metadata
        lines = [
            f"Layer analysis of {meta.get('teacher')}: "
            f"{MEASURE_LABELS.get(meta.get('measure'), meta.get('measure'))}, "
            f"{self.stats.num_utterances} utterances, "
            f"{self.stats.num_frames_used} frames, {self.stats.seconds:.1f} s",
            f"{self.clustering.k} groups of {self.clustering.num_states} hidden "
            f"states ({self.clustering.linkage} linkage on 1 - similarity):",
            self.clustering.summary(),
        ]
        if meta.get("num_skipped"):
            lines.append(f"Skipped {meta['num_skipped']} unreadable utterances.")
        if self.clustering.tie_break:
            lines.append("Tied distances: the cut at K broke ties by merge order.")
        if self.files:
            lines.append(f"Outputs in {Path(self.files['groups']).parent}")
        return "\n".join(lines)


def teacher_display_name(teacher):
    """A short name for titles: the hub id, or the folder name of a local model.

    Arguments
    ---------
    teacher : str, os.PathLike or torch.nn.Module
        The teacher or its source.

    Returns
    -------
    str

    Example
    -------
    >>> teacher_display_name("microsoft/wavlm-base-plus")
    'microsoft/wavlm-base-plus'
    """
    if isinstance(teacher, (str, os.PathLike)):
        text = str(teacher)
        return Path(text).name if os.path.isdir(text) else text
    config = getattr(teacher, "config", None)
    name = getattr(config, "_name_or_path", "") if config is not None else ""
    if name:
        return Path(name).name if os.path.isdir(name) else name
    return type(teacher).__name__


def write_similarity(similarity, npy_path, csv_path):
    """Save the matrix as ``.npy`` and as a csv with layer indices.

    Arguments
    ---------
    similarity : numpy.ndarray
        Square matrix.
    npy_path : str or os.PathLike
        Numpy file.
    csv_path : str or os.PathLike
        Csv file: header ``layer,0,1,...`` then one row per layer.

    Example
    -------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> paths = [os.path.join(folder, n) for n in ("s.npy", "s.csv")]
    >>> write_similarity(np.eye(2), *paths)
    >>> open(paths[1]).read().splitlines()[:2]
    ['layer,0,1', '0,1.0,0.0']
    """
    matrix = np.asarray(similarity, dtype=np.float64)
    np.save(npy_path, matrix)
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["layer", *range(matrix.shape[0])])
        for index, row in enumerate(matrix):
            writer.writerow([index, *(repr(float(v)) for v in row)])


def run_layer_analysis(
    teacher,
    batches,
    output_dir,
    k=4,
    linkage="average",
    measure="cka",
    title=None,
    teacher_name=None,
    max_frames_per_utterance=None,
    seed=0,
    device="cpu",
    progress=True,
    metadata=None,
    hidden_state_zero=None,
    **measure_options,
):
    """Compute the layer similarity, cluster it and write all outputs.

    K, linkage and measure are checked before the teacher runs. The matrix is
    written before clustering, so it is kept even if clustering then refuses
    it (e.g. NaN for a constant layer).

    Arguments
    ---------
    teacher : str, transformers.PreTrainedModel or callable
        See :func:`~speechbrain_skill.layer_groups.similarity.compute_layer_similarity`.
    batches : iterable
        Calibration batches (``PaddedBatch`` with ``sig``, or pairs).
    output_dir : str or os.PathLike
        Folder for the outputs (created).
    k : int
        Number of groups.
    linkage : str
        ``average``, ``complete``, ``single`` or ``ward``.
    measure : str
        ``cka``, ``cka_minibatch`` or ``cosine``.
    title : str, optional
        Plot title; by default names the teacher, measure and calibration size.
    teacher_name : str, optional
        Name used in titles and json (derived from ``teacher`` by default).
    max_frames_per_utterance : int, optional
        Frame subsampling per utterance.
    seed : int
        Seed of the subsampling.
    device : str
        Device of the teacher and the accumulation.
    progress : bool
        Progress bar.
    metadata : dict, optional
        Extra facts stored in ``groups.json`` (e.g. the manifest).
    hidden_state_zero : str, optional
        Convention of hidden state 0, see
        :func:`~speechbrain_skill.layer_groups.similarity.compute_layer_similarity`.
    **measure_options
        Passed to the measure.

    Returns
    -------
    LayerAnalysisResult

    Example
    -------
    >>> import tempfile
    >>> import torch
    >>> from speechbrain_skill.lobes.tiny_models import save_tiny_model
    >>> teacher = save_tiny_model(tempfile.mkdtemp())
    >>> wavs = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
    >>> result = run_layer_analysis(
    ...     teacher, [(wavs, torch.ones(2))], tempfile.mkdtemp(), k=2, progress=False
    ... )
    >>> len(result.groups), sorted(result.files)[:2]
    (2, ['dendrogram', 'groups'])
    """
    if linkage not in LINKAGES:
        raise ValueError(
            f"Unknown linkage '{linkage}'; choose one of {list(LINKAGES)}."
        )
    if measure not in MEASURES:
        raise ValueError(
            f"Unknown similarity measure '{measure}'; choose one of {sorted(MEASURES)}."
        )
    teacher_name = teacher_name or teacher_display_name(teacher)
    teacher = as_teacher(teacher)
    num_states = getattr(teacher, "num_hidden_states", None)
    if num_states is not None:
        validate_k(k, num_states)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    files = {key: str(output_dir / name) for key, name in OUTPUT_FILES.items()}

    similarity, stats = compute_layer_similarity(
        teacher,
        batches,
        measure=measure,
        max_frames_per_utterance=max_frames_per_utterance,
        seed=seed,
        device=device,
        progress=progress,
        return_stats=True,
        hidden_state_zero=hidden_state_zero,
        **measure_options,
    )
    write_similarity(similarity, files["matrix_npy"], files["matrix_csv"])
    clustering = cluster_layers(similarity, k, linkage=linkage)

    info = {
        "teacher": teacher_name,
        "measure": measure,
        "hidden_state_zero": hidden_state_zero
        or getattr(teacher, "hidden_state_zero", "transformer_input"),
        "num_utterances": stats.num_utterances,
        "num_frames": stats.num_frames,
        "num_frames_used": stats.num_frames_used,
        "max_frames_per_utterance": max_frames_per_utterance,
        "seed": seed,
        "seconds": round(stats.seconds, 2),
        "num_skipped": getattr(batches, "num_skipped", 0),
        "skipped_files": merge_skipped(getattr(batches, "skipped", {})),
        **{key: _jsonable(value) for key, value in measure_options.items()},
        **dict(metadata or {}),
    }
    save_groups(files["groups"], clustering, info)
    label = MEASURE_LABELS[measure]
    calibration = f"{stats.num_utterances} utterances"
    plot_similarity_heatmap(
        similarity,
        clustering.groups,
        files["heatmap"],
        title or f"{teacher_name}: {label}, {calibration}, K = {clustering.k}",
        measure_name=label,
    )
    plot_dendrogram(
        clustering.linkage_matrix,
        files["dendrogram"],
        title or f"{teacher_name}: {linkage} linkage on 1 - {label}, {calibration}",
        k=clustering.k,
        groups=clustering.groups,
    )
    result = LayerAnalysisResult(similarity, clustering, stats, files, info)
    Path(files["summary"]).write_text(result.summary() + "\n")
    return result


def _jsonable(value):
    return (
        value if isinstance(value, (int, float, str, bool, type(None))) else str(value)
    )
