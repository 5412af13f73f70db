"""The end-of-run report: parameters, sparsity reached vs target, curves, summary."""

import json
import os
import textwrap
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


LOSS_NOTE = (
    "L1 is 0 or more and -cos is -1 or more, so the sum can be negative;\n"
    "a perfect fit gives -1 (the cosine part). Lower is better."
)
MULTIPLIER_NOTE = (
    "penalty = lambda1 (s - t) + lambda2 (s - t)^2 (s: expected, t: target\n"
    "sparsity). Trained by gradient ascent: they grow in size while s misses t,\n"
    "which pushes s towards t, and level off once s reaches t."
)


def plot_curves(histories, path, loss_definition=None):
    """Plot loss per stage and, for pruning, expected vs target sparsity and lambdas.

    Every panel has labelled axes and a note on how to read it (the loss can
    be negative; what the multipliers do).

    Arguments
    ---------
    histories : dict
        Stage name -> list of history entries.
    path : str or os.PathLike
        Output PNG.
    loss_definition : str, optional
        The loss in words (:func:`describe_loss`), for the y label.

    Returns
    -------
    str
        The path written.

    Example
    -------
    >>> import os, tempfile
    >>> history = [{"step": s, "distill_loss": -0.5 - s / 100, "lambda1": -s / 10,
    ...             "lambda2": s / 10, "expected_sparsity": s / 20,
    ...             "target_sparsity": 0.5} for s in (10, 20)]
    >>> path = os.path.join(tempfile.mkdtemp(), "curves.png")
    >>> plot_curves({"prune": history, "final": []}, path) == path
    True
    """
    pruning = histories.get("prune") or []
    panels = 1 + (2 if pruning else 0)
    figure, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.6), squeeze=False)
    axes = axes[0]
    offset = 0
    for stage, entries in histories.items():
        if not entries:
            continue
        steps = [offset + e["step"] for e in entries]
        axes[0].plot(
            steps, [e["distill_loss"] for e in entries], ".-", label=f"{stage} stage"
        )
        offset = steps[-1]
    definition = loss_definition or "distillation loss"
    axes[0].set(
        title="Distillation loss (training batches)",
        xlabel="optimizer step (the final stage follows the pruning stage)",
        ylabel="\n".join(textwrap.wrap(definition, 40)) + "\n(no unit)",
    )
    if "cos" in definition.lower():
        axes[0].text(0, -0.2, LOSS_NOTE, transform=axes[0].transAxes, va="top")
    if axes[0].get_lines():  # a run shorter than log_interval logged no step
        axes[0].legend()
    if pruning:
        steps = [e["step"] for e in pruning]
        axes[1].plot(
            steps,
            [e["expected_sparsity"] for e in pruning],
            label="expected (from the gates)",
        )
        axes[1].plot(
            steps,
            [e["target_sparsity"] for e in pruning],
            "--",
            label="target (ramps up, then fixed)",
        )
        axes[1].set(
            title="Sparsity (pruning stage)",
            xlabel="optimizer step",
            ylabel="share of the student's parameters removed",
            ylim=(0, 1),
        )
        axes[1].legend(fontsize=8)
        axes[2].plot(steps, [e["lambda1"] for e in pruning], label="lambda1")
        axes[2].plot(steps, [e["lambda2"] for e in pruning], label="lambda2")
        axes[2].axhline(0, color="grey", lw=0.5)
        axes[2].set(
            title="Lagrange multipliers of the sparsity constraint",
            xlabel="optimizer step",
            ylabel="multiplier value (no unit)",
        )
        axes[2].text(0, -0.2, MULTIPLIER_NOTE, transform=axes[2].transAxes, va="top")
        axes[2].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")
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
    report["curves"] = plot_curves(
        histories, export / "curves.png", summary.get("loss_definition")
    )
    (export / "report.json").write_text(
        json.dumps(report, indent=2, default=str) + "\n"
    )
    (export / "report.md").write_text(report_markdown(report, output_folder, export))
    return report


# The plots of a run, where they are in the output folder, and how to read them.
PLOTS = (
    (
        "student/curves.png",
        "training curves: left, the distillation loss per stage (lower is better; "
        "below 0 is normal, since the -cos part goes down to -1); middle, the "
        "sparsity the gates give against the target; right, the Lagrange "
        "multipliers that push the sparsity to the target (they level off once "
        "it is reached).",
    ),
    (
        "layer_analysis/similarity_heatmap.png",
        "how alike the teacher's hidden states are (linear CKA, 1 = the same "
        "information); the coloured boxes are the groups whose means the "
        "student learns.",
    ),
    (
        "layer_analysis/dendrogram.png",
        "the hierarchical clustering of the teacher's hidden states: layers "
        "that join low are alike; the dashed line cuts the tree into the K "
        "groups.",
    ),
)


def report_markdown(report, output_folder, export_folder):
    """``report.md``: the summary, then every plot of the run with how to read it.

    Links are relative to the export folder, for the plots that exist.

    Example
    -------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> (out / "student").mkdir()
    >>> _ = (out / "student" / "curves.png").write_bytes(b"")
    >>> report = {"teacher": "t", "teacher_params": 4, "student_params": 2,
    ...     "unpruned_student_params": 4, "fraction_of_teacher": 0.5,
    ...     "sparsity_reached": 0.5, "groups": [[0]], "student_layers": [0],
    ...     "student_dir": str(out / "student")}
    >>> print(report_markdown(report, out, out / "student").split("## Plots")[1])
    ... # doctest: +ELLIPSIS
    <BLANKLINE>
    <BLANKLINE>
    - [curves.png](curves.png): training curves: left, ...
    """
    lines = ["# Distillation run", "", "```", format_summary(report), "```"]
    plots = []
    for relative, how_to_read in PLOTS:
        path = Path(output_folder) / relative
        if relative.startswith("student/"):
            path = Path(export_folder) / Path(relative).name
        if path.is_file():
            link = os.path.relpath(path, export_folder)
            plots.append(f"- [{Path(relative).name}]({link}): {how_to_read}")
    if plots:
        lines += ["", "## Plots", "", *plots]
    return "\n".join(lines) + "\n"


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
                       (each group's mean is learned by the student layer at its deepest
                       teacher layer; the student starts as a copy of the teacher)
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
    deepest = [max(group) for group in report["groups"]]
    why = []
    if report["student_layers"] == deepest and max(map(len, report["groups"])) > 1:
        why = [
            " " * 19 + "(each group's mean is learned by the student layer at its "
            "deepest",
            " " * 19 + "teacher layer; the student starts as a copy of the teacher)",
        ]
    target = report.get("target_sparsity")
    lines = [
        "====================  distillation summary  ====================",
        f"teacher            {report['teacher']}",
        f"layer groups       {groups}",
        *why,
        f"parameters         teacher {report['teacher_params']:,} -> student "
        f"{report['student_params']:,} "
        f"({report['fraction_of_teacher']:.1%} of teacher)",
        f"sparsity reached   {report['sparsity_reached']:.3f}"
        + (f" (target {target})" if target is not None else ""),
        *_loss_lines(report),
        *_data_lines(report),
        f"student            {report['student_dir']} "
        "(load: speechbrain_skill.lobes.student.load_student)",
        *_export_lines(report),
    ]
    return "\n".join(lines)


def _export_lines(report):
    """The export formats written next to the student, and why any was refused."""
    path = Path(report["student_dir"]) / "export_summary.json"
    if not path.is_file():
        return []
    summary = json.loads(path.read_text())
    names = {"speechbrain": "SpeechBrain (hyperparams.yaml)"}
    written = [
        names.get(name, f"{name}/")
        for name in summary.get("folders", {})
        if name != "student"
    ]
    lines = [f"exports            {', '.join(written) or 'none'} (export_summary.json)"]
    for name, reasons in summary.get("refused", {}).items():
        lines += textwrap.wrap(
            f"{name} refused: {'; '.join(reasons)}",
            width=88,
            initial_indent=" " * 19,
            subsequent_indent=" " * 19,
        )
    return lines


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
        removed = []
        if kept.get("min_duration") is not None:
            removed.append(f"{kept['too_short']} shorter than {kept['min_duration']} s")
        if kept.get("max_duration") is not None:
            removed.append(f"{kept['too_long']} longer than {kept['max_duration']} s")
        lines.append(
            f"duration filter    kept {kept['kept']} of {kept['utterances']} training "
            f"utterances ({', '.join(removed) or 'no limit'})"
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
