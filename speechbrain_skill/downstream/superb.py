r"""The SUPERB table: every task recipe on every upstream, with the SUPERB score.

For each upstream (``NAME=SOURCE``, any source the downstream recipes take)
and each task (``all``: every recipe of
:data:`~speechbrain_skill.downstream.compare.TASKS`), the task's recipe runs
in ``<output>/<task>/<name>/<upstream key>/`` (finished runs are reused; the
key digests the source and its weights, so a changed upstream runs again).
Then the command writes ``superb.md``, ``superb.csv``, ``superb.json`` and
``superb.png``: one row per upstream with every task's metric and the SUPERB
score (:mod:`~speechbrain_skill.downstream.superb_score`), beside the
published rows of WavLM Base+, DPWavLM, DPHuBERT and DistilHuBERT (labelled
as published, with their source)::

    python -m speechbrain_skill.downstream.superb \
        --upstream teacher=microsoft/wavlm-base-plus \
        --upstream skill=results/skill/1986/student \
        --tasks all --data_folder pr=/data/LibriSpeech --data_folder ic=/data/fsc ... \
        --output results/superb

    python -m speechbrain_skill.downstream.superb --builtin \
        --upstream teacher=builtin:tiny-wavlm --upstream student=/tmp/qs/student \
        --tasks all --output results/superb_builtin

``--builtin`` builds every task's analog (:mod:`speechbrain_skill.data.analogs`)
under ``<output>/analogs`` and runs with small budgets; its score is labelled
as not comparable with the leaderboard, and so is a score that misses tasks.
"""

import argparse
import csv
import json
import logging
import os
import shlex
import sys
import time
from pathlib import Path

from matplotlib.figure import Figure

from speechbrain_skill.downstream.compare import (
    RECIPES_ROOT,
    TASKS,
    compare,
    format_count,
    parse_upstream,
)
from speechbrain_skill.downstream.superb_score import (
    PUBLISHED,
    PUBLISHED_SOURCE,
    SCORE_SOURCE,
    SUPERB_TASKS,
    reference_points,
    superb_score,
)

logger = logging.getLogger(__name__)

COLUMNS = {
    "pr": "PR PER↓",
    "asr": "ASR WER↓",
    "ks": "KS acc↑",
    "qbe": "QbE MTWV↑",
    "sid": "SID acc↑",
    "asv": "ASV EER↓",
    "sd": "SD DER↓",
    "ic": "IC acc↑",
    "sf": "SF F1↑ / CER↓",
    "er": "ER acc↑",
}


def recipe_for(superb_task):
    """The :data:`TASKS` key of a SUPERB task, or None when no recipe exists.

    Example
    -------
    >>> recipe_for("ks"), recipe_for("pr"), recipe_for("no-such-task")
    ('kws', 'pr', None)
    """
    for name, task in TASKS.items():
        if task.superb_task == superb_task:
            return name
    return None


def resolve_tasks(names):
    """Task keys from names (``all``: every recipe; keys or SUPERB names), SUPERB order.

    Example
    -------
    >>> resolve_tasks(["ks", "pr"])
    ['pr', 'kws']
    """
    if "all" in names:  # every SUPERB task that has a recipe
        names = [task for task in SUPERB_TASKS if recipe_for(task)]
    keys = []
    for name in names:
        key = name if name in TASKS else recipe_for(name)
        if key is None:
            raise ValueError(f"No recipe for task '{name}'; recipes: {sorted(TASKS)}.")
        keys.append(key)
    order = {t: i for i, t in enumerate(SUPERB_TASKS)}
    return sorted(
        dict.fromkeys(keys), key=lambda k: order.get(TASKS[k].superb_task, 99)
    )


def superb_metrics(row, tasks):
    """SUPERB task -> {metric: value} of one upstream row of a comparison.

    Example
    -------
    >>> row = {"details": {"sf": {"slot_type_f1": 80.0, "slot_value_cer": 30.0,
    ...                           "WER": 9.0}, "kws": {"accuracy": 90.0}}}
    >>> superb_metrics(row, ["kws", "sf"])
    {'ks': {'accuracy': 90.0}, 'sf': {'slot_type_f1': 80.0, 'slot_value_cer': 30.0}}
    """
    metrics = {}
    for key in tasks:
        stats = row.get("details", {}).get(key) or {}
        superb = TASKS[key].superb_task
        values = {
            point.metric: stats[point.metric]
            for point in reference_points(superb)
            if stats.get(point.metric) is not None
        }
        if values:
            metrics[superb] = values
    return metrics


def format_metric(superb_task, values):
    """A task's cell: its metric(s) in the leaderboard's units.

    Example
    -------
    >>> format_metric("sf", {"slot_type_f1": 90.58, "slot_value_cer": 21.2})
    '90.58 / 21.20'
    >>> format_metric("qbe", {"MTWV": 0.0988})
    '0.0988'
    """
    cells = []
    for point in reference_points(superb_task):
        value = values.get(point.metric)
        if value is None:
            cells.append("–")
        elif point.metric == "MTWV":
            cells.append(f"{value:.4f}")
        else:
            cells.append(f"{value:.2f}")
    return " / ".join(cells)


def build_rows(report, tasks, builtin):
    """Our rows (one per upstream) and the published rows, as plain dicts."""
    run = {TASKS[key].superb_task for key in tasks}
    rows = []
    for upstream in report["upstreams"]:
        metrics = superb_metrics(upstream, tasks)
        score = superb_score(metrics)
        cells = {}
        for task in SUPERB_TASKS:
            if task in metrics:
                cells[task] = format_metric(task, metrics[task])
            elif task in run:
                cells[task] = "failed"
            elif recipe_for(task) is None:
                cells[task] = "no recipe"
            else:
                cells[task] = "not run"
        notes = []
        if not score["complete"]:
            notes.append(f"partial: {len(score['tasks'])}/10 tasks")
        if builtin:
            notes.append("built-in analogs")
        comparable = score["complete"] and not builtin
        rows.append(
            dict(
                name=upstream["name"],
                source=upstream["source"],
                params=upstream.get("params"),
                kind="ours",
                metrics=metrics,
                cells=cells,
                score=score["score"],
                task_scores=score["tasks"],
                missing=score["missing"],
                comparable=comparable,
                note="; ".join(notes) + ("; not comparable" if not comparable else ""),
            )
        )
    for name, published in PUBLISHED.items():
        score = superb_score(published["metrics"])
        rows.append(
            dict(
                name=name,
                source="published",
                params=published["params"],
                kind="published",
                metrics=published["metrics"],
                cells={
                    t: format_metric(t, published["metrics"][t]) for t in SUPERB_TASKS
                },
                score=score["score"],
                task_scores=score["tasks"],
                missing=[],
                comparable=True,
                note="published",
            )
        )
    return rows


def markdown_table(rows):
    """The SUPERB table in markdown (one row per upstream, published rows last).

    Example
    -------
    >>> rows = [dict(name="x", source="s", params=1e6, kind="ours", score=500.0,
    ...              cells={t: "1.00" for t in SUPERB_TASKS}, note="")]
    >>> markdown_table(rows).splitlines()[2].startswith("| x | 1.00M | 1.00 |")
    True
    """
    header = ["upstream", "params"] + [COLUMNS[t] for t in SUPERB_TASKS]
    header += ["SUPERB score", "note"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 2) + "---|",
    ]
    for row in rows:
        name = row["name"] + (" (published)" if row["kind"] == "published" else "")
        params = format_count(row["params"]) if row.get("params") else "?"
        score = "–" if row["score"] is None else f"{row['score']:.0f}"
        cells = [name, params] + [row["cells"][t] for t in SUPERB_TASKS]
        lines.append("| " + " | ".join(cells + [score, row["note"]]) + " |")
    return "\n".join(lines)


def write_csv(rows, path):
    """One line per row: name, kind, params, every metric, score, note."""
    metrics = [(p.task, p.metric) for t in SUPERB_TASKS for p in reference_points(t)]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["upstream", "kind", "source", "params"]
            + [f"{t}:{m}" for t, m in metrics]
            + ["superb_score", "comparable", "note"]
        )
        for row in rows:
            values = [row["metrics"].get(t, {}).get(m, "") for t, m in metrics]
            score = "" if row["score"] is None else round(row["score"], 2)
            writer.writerow(
                [row["name"], row["kind"], row["source"], row.get("params") or ""]
                + values
                + [score, row["comparable"], row["note"]]
            )


def plot_scores(rows, path):
    """Per-task SUPERB scores (0 = FBANK, 1000 = SOTA) of every row, as bars."""
    figure = Figure(figsize=(11, 4.2))
    axes = figure.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(rows))
    for index, row in enumerate(rows):
        xs = [i + index * width for i, _ in enumerate(SUPERB_TASKS)]
        ys = [row["task_scores"].get(t, float("nan")) for t in SUPERB_TASKS]
        label = row["name"] + (" (published)" if row["kind"] == "published" else "")
        if row["score"] is not None:
            label += f": {row['score']:.0f}"
        hatch = "//" if row["kind"] == "published" else None
        axes.bar(xs, ys, width, label=label, hatch=hatch, alpha=0.85)
    axes.set_xticks([i + 0.4 - width / 2 for i in range(len(SUPERB_TASKS))])
    axes.set_xticklabels([t.upper() for t in SUPERB_TASKS])
    axes.axhline(0, color="black", linewidth=0.8)
    axes.axhline(1000, color="grey", linewidth=0.8, linestyle="--")
    axes.set_ylabel("task score (FBANK 0, SOTA 1000)")
    axes.set_title("SUPERB task scores (ours: see notes on comparability)")
    # Below the axes: inside, it hides the long negative bars of the analog rows.
    axes.legend(
        fontsize="small", ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.1)
    )
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return str(path)


def run_suite(
    upstreams,
    tasks,
    output,
    data_folders=None,
    builtin=False,
    seed=0,
    recipe_args=(),
    device=None,
    in_process=False,
    force=False,
    recipes_root=RECIPES_ROOT,
    command=None,
):
    """Run the tasks, write the SUPERB table, plot and score; returns the report.

    Arguments
    ---------
    upstreams : list of (str, str)
        (name, source) pairs.
    tasks : list of str
        :data:`TASKS` keys.
    output : str or os.PathLike
        Output folder.
    data_folders : dict, optional
        Task -> data folder (not with ``builtin``).
    builtin : bool
        Build and use every task's analog, with small budgets.
    seed : int
        Seed of the analogs.
    recipe_args : sequence of str
        Overrides for every recipe run.
    device : str, optional
        Device of the runs.
    in_process : bool
        Run the recipes inside this interpreter.
    force : bool
        Re-run finished runs.
    recipes_root : str or os.PathLike
        The repository's ``recipes`` folder.
    command : str, optional
        The command line, recorded.

    Returns
    -------
    dict
    """
    from speechbrain_skill.data.analogs import build_analog

    output = Path(output).resolve()
    start = time.time()
    if builtin:
        data_folders = {
            task: str(build_analog(task, output / "analogs", seed=seed))
            for task in tasks
        }
    analog_seconds = round(time.time() - start, 1)
    missing = [task for task in tasks if task not in (data_folders or {})]
    if missing:
        raise ValueError(f"No data folder for {missing} (give TASK=PATH or --builtin).")
    comparison = compare(
        upstreams,
        data_folders,
        output,
        tasks=tasks,
        quick=builtin,
        recipe_args=recipe_args,
        device=device,
        in_process=in_process,
        force=force,
        speed_rounds=1,
        recipes_root=recipes_root,
        keyed=True,
        write_report=False,
    )
    rows = build_rows(comparison, tasks, builtin)
    report = dict(
        tasks=list(tasks),
        builtin=builtin,
        rows=rows,
        data_folders=data_folders,
        run_seconds=comparison["run_seconds"],
        analog_seconds=analog_seconds,
        total_seconds=round(time.time() - start, 1),
        load_average=list(os.getloadavg()),
        score_source=SCORE_SOURCE,
        published_source=PUBLISHED_SOURCE,
        command=command,
    )
    write_outputs(report, output)
    return report


def write_outputs(report, output):
    """``superb.{md,csv,json,png}`` in ``output``."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    rows = report["rows"]
    (output / "superb.json").write_text(json.dumps(report, indent=2))
    write_csv(rows, output / "superb.csv")
    plot_scores(rows, output / "superb.png")
    data = (
        "built-in analogs (synthetic TTS data in each dataset's layout): the scores "
        "below are NOT comparable with the leaderboard"
        if report["builtin"]
        else "the data folders given"
    )
    notes = [
        "",
        f"Data: {data}. Metrics: PR PER, ASR WER, KS/SID/IC/ER accuracy, QbE MTWV, "
        "ASV EER, SD DER, SF slot-type F1 / slot-value CER, in % except MTWV; "
        "each on its test set.",
        f"Score: {report['score_source']}: per metric 1000 x (value - FBANK) / "
        "(SOTA - FBANK), averaged within a task (SF: F1 and CER), then over the "
        "tasks that have a result. A row missing tasks has a partial score, not "
        "comparable with the leaderboard's ten-task score.",
        f"Rows marked (published): values from {report['published_source']}; "
        "not measured here.",
        "Cells: 'no recipe' = the project has no recipe for the task yet; "
        "'not run' = not asked; 'failed' = the run wrote no result (see its log.txt).",
        f"Time: {report['total_seconds']:.0f} s in all (analogs "
        f"{report['analog_seconds']:.0f} s); load average after the runs: "
        + ", ".join(f"{v:.1f}" for v in report["load_average"])
        + ".",
        "",
        f"Command: `{report['command']}`" if report["command"] else "",
        "",
    ]
    table = markdown_table(rows)
    (output / "superb.md").write_text(
        "# SUPERB table\n\n" + table + "\n" + "\n".join(notes)
    )
    print(table)


def main(argv=None):
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--upstream",
        action="append",
        required=True,
        help="NAME=SOURCE (repeat); SOURCE: student dir, hub id, local dir, "
        "builtin:<name>, random:<source>",
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=["all"],
        help=f"'all' or task names ({', '.join(TASKS)}; SUPERB names work too)",
    )
    parser.add_argument(
        "--data_folder",
        action="append",
        default=[],
        help="TASK=PATH (repeat), or one PATH for every task",
    )
    parser.add_argument(
        "--builtin", action="store_true", help="built-in analogs, small budgets"
    )
    parser.add_argument("--output", required=True)
    parser.add_argument("--seed", type=int, default=0, help="seed of the analogs")
    parser.add_argument(
        "--recipe_args", default="", help="extra recipe overrides, one string"
    )
    parser.add_argument("--device", default=None)
    parser.add_argument("--in_process", action="store_true")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--recipes_root", default=str(RECIPES_ROOT))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    upstreams = [parse_upstream(spec) for spec in args.upstream]
    names = [name for name, _ in upstreams]
    if len(set(names)) != len(names):
        parser.error(f"Upstream names must be unique: {names}")
    try:
        tasks = resolve_tasks(args.tasks)
    except ValueError as err:
        parser.error(str(err))
    folders = {}
    for spec in args.data_folder:
        task, sep, path = spec.partition("=")
        key = task if task in TASKS else recipe_for(task)
        if sep and key:
            folders[key] = path
        else:
            folders.update({name: spec for name in tasks})
    if args.builtin and folders:
        parser.error("--builtin builds its own data; give no --data_folder.")
    report = run_suite(
        upstreams,
        tasks,
        args.output,
        data_folders=folders,
        builtin=args.builtin,
        seed=args.seed,
        recipe_args=shlex.split(args.recipe_args),
        device=args.device,
        in_process=args.in_process,
        force=args.force,
        recipes_root=args.recipes_root,
        command="python -m speechbrain_skill.downstream.superb "
        + " ".join(shlex.quote(arg) for arg in (argv or sys.argv[1:])),
    )
    failed = [
        f"{task}/{row['name']}"
        for row in report["rows"]
        if row["kind"] == "ours"
        for task, cell in row["cells"].items()
        if cell == "failed"
    ]
    print(f"Table in {args.output}/superb.md ({report['total_seconds']:.0f} s).")
    if failed:
        print(f"Failed runs (see their compare_run.log / log.txt): {failed}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
