"""The end-of-run report: parameters, sparsity reached vs target, curves, summary."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_history(path):
    r"""Read a ``history.jsonl`` file, keeping the last entry of a repeated step.

    Arguments
    ---------
    path : str or os.PathLike
        The file written by the Brain every ``log_interval`` steps.

    Returns
    -------
    list of dict
        Sorted by step.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "history.jsonl")
    >>> lines = ['{"step": 2, "loss": 3}', '{"step": 1, "loss": 5}',
    ...          '{"step": 2, "loss": 1}']  # step 2 again after a resume
    >>> _ = open(path, "w").write("\n".join(lines))
    >>> [entry["loss"] for entry in read_history(path)]
    [5, 1]
    """
    path = Path(path)
    if not path.is_file():
        return []
    by_step = {}
    for line in path.read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            by_step[entry["step"]] = entry
    return [by_step[step] for step in sorted(by_step)]


def plot_curves(histories, path):
    """Plot loss per stage and, for pruning, expected vs target sparsity and lambdas.

    Arguments
    ---------
    histories : dict
        Stage name -> list of history entries.
    path : str or os.PathLike
        Output PNG.

    Returns
    -------
    str
        The path written.
    """
    pruning = histories.get("prune") or []
    panels = 1 + (2 if pruning else 0)
    figure, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.8), squeeze=False)
    axes = axes[0]
    offset = 0
    for stage, entries in histories.items():
        if not entries:
            continue
        steps = [offset + e["step"] for e in entries]
        axes[0].plot(steps, [e["distill_loss"] for e in entries], label=f"{stage}")
        offset = steps[-1]
    axes[0].set(title="Distillation loss (train)", xlabel="step (stages chained)")
    if axes[0].get_lines():  # a run shorter than log_interval logged no step
        axes[0].legend()
    if pruning:
        steps = [e["step"] for e in pruning]
        axes[1].plot(steps, [e["expected_sparsity"] for e in pruning], label="expected")
        axes[1].plot(
            steps, [e["target_sparsity"] for e in pruning], "--", label="target"
        )
        axes[1].set(title="Sparsity (pruning stage)", xlabel="step", ylim=(0, 1))
        axes[1].legend()
        axes[2].plot(steps, [e["lambda1"] for e in pruning], label="lambda1")
        axes[2].plot(steps, [e["lambda2"] for e in pruning], label="lambda2")
        axes[2].set(title="Lagrange multipliers", xlabel="step")
        axes[2].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return str(path)


def write_report(
    output_folder,
    export_folder,
    teacher,
    teacher_source,
    target_sparsity,
    summary,
    student=None,
):
    """Write ``report.json``, ``report.md`` and ``curves.png``.

    ``report.md`` holds :func:`format_summary` of the report; the recipe prints
    the same text last, after the export formats.

    Arguments
    ---------
    output_folder : str or os.PathLike
        The run's output folder (histories are read from its stage folders).
    export_folder : str or os.PathLike
        The exported student (the report is written next to it).
    teacher : FrozenSSLTeacher
        The teacher (its parameter count).
    teacher_source : str
        How the teacher was given (hub id, folder, ``builtin:``).
    target_sparsity : float or None
        The pruning target; None without pruning.
    summary : dict
        Facts gathered by the stages (groups, losses and their definition,
        skipped files).
    student : PrunableSSLEncoder, optional
        The exported student, in memory; None: loaded from ``export_folder``.

    Returns
    -------
    dict
        The report.
    """
    from speechbrain_skill.lobes.student import load_student, num_params

    output_folder = Path(output_folder)
    export = Path(export_folder)
    if student is None:
        student = load_student(export)
    teacher_params = num_params(teacher.model)
    student_params = num_params(student)
    reference = student.config.unpruned_num_params or teacher_params
    report = {
        "teacher": str(teacher_source),
        "teacher_params": teacher_params,
        "student_params": student_params,
        "unpruned_student_params": reference,
        # Pruning sparsity is measured against the unpruned student (a copy of the
        # teacher for SKILL/DPHuBERT); the size ratio against the teacher too.
        "sparsity_reached": round(1.0 - student_params / reference, 4),
        "fraction_of_teacher": round(student_params / teacher_params, 4),
        "target_sparsity": target_sparsity,
        **summary,
        "student_dir": str(export),
    }
    histories = {
        stage: read_history(output_folder / stage / "history.jsonl")
        for stage in ("prune", "final")
    }
    report["curves"] = plot_curves(histories, export / "curves.png")
    (export / "report.json").write_text(
        json.dumps(report, indent=2, default=str) + "\n"
    )
    text = format_summary(report)
    (export / "report.md").write_text("```\n" + text + "\n```\n")
    return report


def describe_loss(distill_loss, auxiliary_loss=None):
    """The training loss in words, for the report.

    Arguments
    ---------
    distill_loss : object
        The distillation loss (its ``describe()`` if it has one).
    auxiliary_loss : object, optional
        An extra loss term (e.g. the enhancement loss).

    Returns
    -------
    str

    Example
    -------
    >>> describe_loss(object(), auxiliary_loss=[])
    'object + list'
    """
    describe = getattr(distill_loss, "describe", None)
    text = describe() if describe is not None else type(distill_loss).__name__
    if auxiliary_loss is not None:
        text += f" + {type(auxiliary_loss).__name__}"
    return text


def format_summary(report):
    """One screen of text summarising a run.

    Example
    -------
    >>> print(format_summary({"teacher": "t", "teacher_params": 100,
    ...     "student_params": 25, "unpruned_student_params": 100,
    ...     "fraction_of_teacher": 0.25,
    ...     "sparsity_reached": 0.75, "target_sparsity": 0.75, "groups": [[0, 1]],
    ...     "student_layers": [1], "final_valid_loss": -0.91154855,
    ...     "loss_definition": "mean over targets of L1 + (-cos)",
    ...     "final_valid_fit": {"mean_cosine": 0.9712, "mean_l1": 0.0603},
    ...     "student_dir": "d"}))
    ... # doctest: +NORMALIZE_WHITESPACE
    ====================  distillation summary  ====================
    teacher            t
    layer groups       [0, 1] -> student layer 1
    parameters         teacher 100 -> student 25 (25.0% of teacher)
    sparsity reached   0.750 (target 0.75)
    fit to targets     mean cosine 0.9712, mean L1 0.0603 (validation set; 1 and 0
                       are a perfect fit; comparable across methods)
    final valid loss   -0.9115 = mean over targets of L1 + (-cos); lower is better;
                       comparable only between runs with the same loss
    skipped files      0 in training and validation, 0 in calibration,
                       0 left out by the data preparation (distinct files)
    student            d (load: speechbrain_skill.lobes.student.load_student)
    """
    groups = ", ".join(
        f"{group} -> student layer {layer}"
        for group, layer in zip(report["groups"], report["student_layers"])
    )
    target = report.get("target_sparsity")
    lines = [
        "====================  distillation summary  ====================",
        f"teacher            {report['teacher']}",
        f"layer groups       {groups}",
        f"parameters         teacher {report['teacher_params']:,} -> student "
        f"{report['student_params']:,} "
        f"({report['fraction_of_teacher']:.1%} of teacher)",
        f"sparsity reached   {report['sparsity_reached']:.3f}"
        + (f" (target {target})" if target is not None else ""),
        *_loss_lines(report),
        *_data_lines(report),
        f"student            {report['student_dir']} "
        "(load: speechbrain_skill.lobes.student.load_student)",
    ]
    return "\n".join(lines)


def _data_lines(report):
    """Files the run could not use, by where they were found."""

    def total(key):
        """Sum of the counts under ``key``."""
        return sum((report.get(key) or {}).values())

    lines = [
        f"skipped files      {total('skipped_files')} in training and validation, "
        f"{total('skipped_in_calibration')} in calibration,",
        f"                   {total('excluded_in_preparation')} left out by the "
        "data preparation (distinct files)",
    ]
    kept = report.get("duration_filter")
    if kept:
        lines.append(
            f"duration filter    kept {kept['kept']} of {kept['utterances']} training "
            f"utterances ({kept['too_short']} shorter than {kept['min_duration']} s, "
            f"{kept['too_long']} longer than {kept['max_duration']} s)"
        )
    return lines


def _loss_lines(report):
    """The fit to the targets (comparable) and the final loss, explained."""
    lines = []
    fit = report.get("final_valid_fit") or {}
    if fit.get("mean_cosine") is not None:
        lines += [
            f"fit to targets     mean cosine {fit['mean_cosine']:.4f}, "
            f"mean L1 {fit['mean_l1']:.4f} (validation set; 1 and 0",
            "                   are a perfect fit; comparable across methods)",
        ]
    loss = report.get("final_valid_loss")
    if loss is None:
        return lines + ["final valid loss   -"]
    definition = report.get("loss_definition") or "the distillation loss"
    return lines + [
        f"final valid loss   {loss:.4f} = {definition}; lower is better;",
        "                   comparable only between runs with the same loss",
    ]
