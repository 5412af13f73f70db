r"""Train the same downstream heads on several upstreams and compare them.

Each (task, upstream) pair is one run of the task's recipe with
``--upstream_source`` set, in ``<output>/<task>/<upstream name>/`` (finished
runs are reused unless ``--force``). Then every upstream's parameters are
counted and its inference speed measured on this machine, and the command
writes ``comparison.md`` (one row per upstream), ``comparison.json``,
``comparison.png`` (metric and speed against size) and
``layer_weights_<task>.png`` (the learned layer weights of every upstream)::

    python -m speechbrain_skill.downstream.compare --quick \
        --data_folder data/builtin --output results/compare \
        --upstream teacher=builtin:tiny-wavlm \
        --upstream skill=results/skill/1986/student \
        --upstream floor=random:results/skill/1986/student

``--quick`` applies small-data CPU settings (few epochs, small ASR head).
"""

import argparse
import json
import logging
import os
import runpy
import shlex
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from speechbrain_skill.downstream.layer_weights import plot_layer_weights

logger = logging.getLogger(__name__)

RECIPES_ROOT = Path(__file__).resolve().parents[2] / "recipes"
RESULTS_FILE = "test_results.json"
LAYER_WEIGHTS_FILE = "layer_weights.json"


@dataclass(frozen=True)
class Task:
    """A downstream recipe and how to read its result.

    ``metric`` (and the ``extra`` statistics) are read from the
    ``report_set`` entry of the run's ``test_results.json``; ``superb`` is
    the SUPERB task it stands for (:mod:`~speechbrain_skill.downstream.superb_score`,
    empty: the same name); ``quick`` are the small-budget overrides of
    ``--quick`` / ``--builtin``, ``quick_common`` whether
    :data:`QUICK_COMMON` applies too (a recipe without a data loader has no
    ``num_workers``).
    """

    name: str
    recipe: str
    hparams: str
    metric: str
    higher_is_better: bool
    report_set: str
    column: str
    quick: tuple
    extra: tuple = ()
    superb: str = ""
    quick_common: bool = True

    @property
    def superb_task(self):
        """The SUPERB task name (``ks`` for ``kws``)."""
        return self.superb or self.name


TASKS = {
    "kws": Task(
        "kws",
        "SpeechCommands/KWS",
        "hparams/kws_mean_pool.yaml",
        "accuracy",
        True,
        "test",
        "KWS acc. (%)",
        # The README's KWS row budget (10 built-in words; 6 epochs at lr 0.002
        # stayed near chance).
        ("--number_of_epochs=10", "--batch_size=16", "--lr=0.005"),
        superb="ks",
    ),
    "sid": Task(
        "sid",
        "VoxCeleb1/SID",
        "hparams/sid_mean_pool.yaml",
        "accuracy",
        True,
        "test",
        "SID acc. (%)",
        (
            "--number_of_epochs=6",
            "--batch_size=8",
            "--eval_batch_size=8",
            "--lr=0.002",
            "--train_max_seconds=3.0",
        ),
    ),
    "asr": Task(
        "asr",
        "LibriSpeech/ASR",
        "hparams/ctc_bilstm.yaml",
        "WER",
        False,
        "test-clean",
        "ASR WER (CER) test-clean (%)",
        (
            "--number_of_epochs=4",
            "--batch_size=8",
            "--lr=0.003",
            "--head_size=64",
        ),
        ("CER",),
    ),
    # SUPERB ASV, SD, ER (issue 21): asv and sd report error rates (lower is better).
    "asv": Task(
        "asv",
        "VoxCeleb1/ASV",
        "hparams/asv_xvector.yaml",
        "EER",
        False,
        "test",
        "ASV EER % (minDCF)",
        (
            "--number_of_epochs=6",
            "--batch_size=8",
            "--lr=0.001",
            "--train_max_seconds=3.0",
            "--valid_fraction=0.25",
            "--tdnn_size=128",
            "--pooled_size=256",
            "--embedding_size=128",
        ),
        ("minDCF",),
    ),
    "sd": Task(
        "sd",
        "LibriMix/SD",
        "hparams/sd_lstm_pit.yaml",
        "DER",
        False,
        "test",
        "SD DER % (at 0.5)",
        ("--number_of_epochs=6", "--batch_size=4", "--lr=0.005", "--lstm_size=64"),
        ("DER_at_0.5",),
    ),
    "er": Task(
        "er",
        "IEMOCAP/ER",
        "hparams/er_mean_pool.yaml",
        "accuracy",
        True,
        "test",
        "ER acc. 5-fold (%)",
        ("--number_of_epochs=4", "--batch_size=4", "--lr=0.002"),
    ),
    "pr": Task(
        "pr",
        "LibriSpeech/PR",
        "hparams/pr_ctc_linear.yaml",
        "PER",
        False,
        "test-clean",
        "PR PER test-clean (%)",
        ("--number_of_epochs=4", "--batch_size=8", "--lr=0.01"),
    ),
    "ic": Task(
        "ic",
        "FluentSpeechCommands/IC",
        "hparams/ic_mean_pool.yaml",
        "accuracy",
        True,
        "test",
        "IC acc. (%)",
        ("--number_of_epochs=4", "--batch_size=8", "--lr=0.002"),
    ),
    "sf": Task(
        "sf",
        "SNIPS/SF",
        "hparams/sf_ctc_bilstm.yaml",
        "slot_type_f1",
        True,
        "test",
        "SF slot-type F1 (slot-value CER) (%)",
        (
            "--number_of_epochs=4",
            "--batch_size=8",
            "--lr=0.003",
            "--head_size=64",
        ),
        ("slot_value_cer",),
    ),
    "qbe": Task(
        "qbe",
        "QUESST14/QbE",
        "hparams/qbe_dtw.yaml",
        "MTWV",
        True,
        "test",
        "QbE MTWV (eval)",
        (),
        quick_common=False,
    ),
}
QUICK_COMMON = ("--num_workers=0",)


def parse_upstream(spec):
    """``NAME=SOURCE`` (or a bare source, named after its last path part).

    Example
    -------
    >>> parse_upstream("floor=random:results/student")
    ('floor', 'random:results/student')
    >>> parse_upstream("builtin:tiny-wavlm")
    ('tiny-wavlm', 'builtin:tiny-wavlm')
    """
    name, sep, source = spec.partition("=")
    if not sep:
        source = spec
        name = Path(spec.split(":")[-1].rstrip("/")).name
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"Bad upstream name in '{spec}'.")
    return name, source


def parse_data_folders(specs, tasks):
    """``PATH`` for every task, or ``TASK=PATH`` for one; later values win.

    Example
    -------
    >>> parse_data_folders(["data/builtin", "kws=/data/sc"], ["kws", "asr"])
    {'kws': '/data/sc', 'asr': 'data/builtin'}
    """
    folders = {}
    for spec in specs:
        task, sep, path = spec.partition("=")
        if sep and task in TASKS:
            folders[task] = path
        else:
            folders.update({name: spec for name in tasks})
    missing = [task for task in tasks if task not in folders]
    if missing:
        raise ValueError(f"No --data_folder for {missing}.")
    return {task: folders[task] for task in tasks}


def run_recipe(script, argv, log_path=None, in_process=False):
    """Run a recipe ``train.py`` with arguments; True when it succeeded.

    Arguments
    ---------
    script : str or os.PathLike
        The recipe's ``train.py``.
    argv : list of str
        Its arguments (hparams file first, then overrides).
    log_path : str or os.PathLike, optional
        Subprocess mode: where stdout and stderr go.
    in_process : bool
        Run inside this interpreter (saves the import time of a new process).

    Returns
    -------
    bool
    """
    script = Path(script).resolve()
    if not in_process:
        log_path = Path(log_path or os.devnull)
        if log_path != Path(os.devnull):
            log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w") as log:
            result = subprocess.run(
                [sys.executable, str(script), *argv],
                cwd=script.parent,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            )
        return result.returncode == 0
    saved_argv, saved_path = sys.argv, list(sys.path)
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    sys.argv = [str(script), *argv]
    sys.path.insert(0, str(script.parent))
    try:
        runpy.run_path(str(script), run_name="__main__")
        return True
    except (Exception, SystemExit):  # noqa: BLE001 - one failed run must not stop the rest
        logger.error("Run %s %s failed:\n%s", script, argv, traceback.format_exc())
        return False
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        # The recipe's logging set-up (file handler in its folder) ends with it.
        for handler in root.handlers:
            if handler not in saved_handlers:
                handler.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def merge_overrides(*groups):
    """Concatenate ``--key=value`` overrides; a later value of a key wins.

    Example
    -------
    >>> merge_overrides(["--lr=0.1", "--batch_size=8"], ["--lr=0.5"])
    ['--lr=0.5', '--batch_size=8']
    """
    merged = {}
    for group in groups:
        for arg in group:
            merged[arg.partition("=")[0]] = arg
    return list(merged.values())


def format_count(count):
    """Short parameter count: ``94.7M``, ``44.8k``.

    Example
    -------
    >>> format_count(94_700_000), format_count(44_832), format_count(12)
    ('94.70M', '44.8k', '12')
    """
    if count >= 1e6:
        return f"{count / 1e6:.2f}M"
    if count >= 1e3:
        return f"{count / 1e3:.1f}k"
    return str(count)


def _format_cell(row, task):
    value = row["metrics"].get(task)
    if value is None:
        return "failed"
    details = row.get("details", {}).get(task, {})
    extra = [f"{details[key]:.2f}" for key in TASKS[task].extra if key in details]
    return f"{value:.2f}" + (f" ({', '.join(extra)})" if extra else "")


def markdown_table(rows, tasks):
    """One markdown row per upstream: params, speed, one column per task.

    Arguments
    ---------
    rows : list of dict
        ``name``, ``source``, ``params``, ``x_real_time``,
        ``cpu_ms_per_second``, ``metrics`` (task -> value or None) and
        optionally ``details`` (task -> all statistics of the reported set).
    tasks : list of str
        Task names (columns, in order).

    Returns
    -------
    str

    Example
    -------
    >>> row = dict(name="t", source="s", params=2000, x_real_time=50.0,
    ...            cpu_ms_per_second=30.0, metrics={"kws": 91.5})
    >>> print(markdown_table([row], ["kws"]))
    | upstream | source | params | x real time | CPU ms per audio s | KWS acc. (%) |
    |---|---|---:|---:|---:|---:|
    | t | `s` | 2.0k | 50.0 | 30.0 | 91.50 |
    """
    header = ["upstream", "source", "params", "x real time", "CPU ms per audio s"]
    header += [TASKS[task].column for task in tasks]
    lines = [
        "| " + " | ".join(header) + " |",
        "|---|---|" + "---:|" * (len(header) - 2),
    ]
    for row in rows:
        cells = [
            row["name"],
            f"`{row['source']}`",
            format_count(row["params"]),
            f"{row['x_real_time']:.1f}",
            f"{row['cpu_ms_per_second']:.1f}",
        ]
        cells += [_format_cell(row, task) for task in tasks]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_comparison(rows, tasks, path):
    """Each task's metric, and the speed, against upstream parameters (PNG).

    Arguments
    ---------
    rows : list of dict
        As for :func:`markdown_table`.
    tasks : list of str
        Task names.
    path : str or os.PathLike
        Output PNG.

    Returns
    -------
    str
    """
    panels = [(TASKS[task].column, task) for task in tasks]
    panels.append(("speed (x real time)", None))
    figure = Figure(figsize=(4.4 * len(panels), 4.0))
    for index, (title, task) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1)
        values = []
        for row in rows:
            value = row["x_real_time"] if task is None else row["metrics"].get(task)
            if value is None:
                continue
            params = row["params"] / 1e6
            values.append(value)
            axes.scatter([params], [value])
            axes.annotate(
                row["name"],
                (params, value),
                xytext=(4, 4),
                textcoords="offset points",
                fontsize="small",
            )
        # Fixed scales: a percentage on 0-100 (no autoscale that turns one
        # utterance into a cliff), the speed from 0.
        axes.set_ylim(
            0, max([100, *values]) * 1.05 if task else max(values or [1]) * 1.2
        )
        axes.margins(x=0.3)  # room for the names of the outermost points
        axes.set_xlabel("upstream parameters (M)")
        axes.set_ylabel(
            "x real time (higher is faster)"
            if task is None
            else f"{TASKS[task].metric} (%, "
            f"{'higher' if TASKS[task].higher_is_better else 'lower'} is better)"
        )
        details = [row.get("details", {}).get(task, {}) for row in rows] if task else []
        sizes = sorted({d["utterances"] for d in details if d.get("utterances")})
        classes = sorted({d["classes"] for d in details if d.get("classes")})
        if len(classes) == 1:
            chance = 100.0 / classes[0]
            axes.axhline(chance, color="grey", ls="--", lw=1)
            axes.annotate(
                f"chance ({classes[0]} classes): {chance:.1f}%",
                (0.02, chance),
                xycoords=("axes fraction", "data"),
                xytext=(0, 3),
                textcoords="offset points",
                fontsize="small",
                color="grey",
            )
        if sizes:
            per = 100.0 / sizes[0]
            size = "/".join(map(str, sizes))
            title += f"\ntest set: {size} utterances" + (
                f" (one = {per:.1f} points)" if TASKS[task].metric == "accuracy" else ""
            )
        axes.set_title(title, fontsize="medium")
        axes.grid(alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return str(path)


def _num_classes(label_encoder_file):
    """Number of labels in a SpeechBrain ``CategoricalEncoder`` file, or None."""
    if not label_encoder_file.is_file():
        return None
    labels = 0
    for line in label_encoder_file.read_text().splitlines():
        if line.startswith("="):
            break
        labels += " => " in line
    return labels or None


def _read_run(run_dir, task):
    results_path = run_dir / RESULTS_FILE
    if not results_path.is_file():
        return {}, None
    results = json.loads(results_path.read_text())
    stats = dict(results["results"].get(task.report_set, {}))
    classes = _num_classes(run_dir / "save" / "label_encoder.txt")
    if classes:
        stats["classes"] = classes
    weights_path = run_dir / LAYER_WEIGHTS_FILE
    weights = None
    if weights_path.is_file():
        weights = json.loads(weights_path.read_text())["weights"]
    return stats, weights


def compare(
    upstreams,
    data_folders,
    output,
    tasks=("kws", "sid", "asr"),
    quick=False,
    recipe_args=(),
    device=None,
    in_process=False,
    force=False,
    speed_seconds=4.0,
    speed_repeats=3,
    speed_rounds=3,
    recipes_root=RECIPES_ROOT,
    command=None,
    keyed=False,
    write_report=True,
):
    """Run every task on every upstream, measure, and write the report.

    Arguments
    ---------
    upstreams : list of (str, str)
        (name, source) pairs; see
        :func:`~speechbrain_skill.lobes.upstream.load_upstream_model`.
    data_folders : dict
        Task -> data folder.
    output : str or os.PathLike
        Output folder.
    tasks : sequence of str
        Keys of :data:`TASKS`.
    quick : bool
        Small-data CPU settings (:data:`TASKS` ``quick`` overrides).
    recipe_args : sequence of str
        More recipe overrides for every run (e.g. ``--precision=bf16``).
    device : str, optional
        Device of the runs and of the speed measurement.
    in_process : bool
        Run the recipes inside this interpreter.
    force : bool
        Re-run finished runs.
    speed_seconds, speed_repeats, speed_rounds : float, int, int
        Speed measurement: waveform length, timed passes (batch 1) and
        rounds over all upstreams (the best round counts).
    recipes_root : str or os.PathLike
        The repository's ``recipes`` folder.
    command : str, optional
        The command line, recorded in the report.
    keyed : bool
        Run folders ``<task>/<name>/<upstream key>``: the key digests the
        source and its weight files, so a changed upstream under the same
        name runs again instead of reusing the old results.
    write_report : bool
        Write ``comparison.{md,json,png}`` (the SUPERB suite writes its own).

    Returns
    -------
    dict
        The report (also written to ``comparison.json``).
    """
    import torch

    output = Path(output).resolve()
    recipes_root = Path(recipes_root)
    rows = {
        name: {"name": name, "source": source, "metrics": {}}
        for name, source in upstreams
    }
    run_seconds = {}
    for task_name in tasks:
        task = TASKS[task_name]
        script = recipes_root / task.recipe / "train.py"
        if not script.is_file():
            raise FileNotFoundError(
                f"{script} not found: pass --recipes_root "
                "(the repository's recipes folder)."
            )
        weights_by_upstream = {}
        for name, source in upstreams:
            run_dir = output / task_name / name
            if keyed:
                from speechbrain_skill.lobes.upstream import upstream_key

                run_dir = run_dir / upstream_key(_absolute_source(source))
            if force or not (run_dir / RESULTS_FILE).is_file():
                argv = [str((script.parent / task.hparams).resolve())]
                argv += merge_overrides(
                    [
                        f"--data_folder={Path(data_folders[task_name]).resolve()}",
                        f"--upstream_source={_absolute_source(source)}",
                        f"--output_folder={run_dir}",
                    ],
                    [*task.quick, *(QUICK_COMMON if task.quick_common else ())]
                    if quick
                    else [],
                    [f"--device={device}"] if device else [],
                    recipe_args,
                )
                logger.info("Training %s on %s ...", task_name, name)
                start = time.time()
                run_recipe(script, argv, run_dir / "compare_run.log", in_process)
                run_seconds[f"{task_name}/{name}"] = round(time.time() - start, 1)
            stats, weights = _read_run(run_dir, task)
            value = stats.get(task.metric)
            rows[name]["metrics"][task_name] = value
            rows[name].setdefault("details", {})[task_name] = stats
            if weights is not None:
                weights_by_upstream[name] = weights
            logger.info("%s / %s: %s = %s", task_name, name, task.metric, value)
        if weights_by_upstream:
            plot_layer_weights(
                weights_by_upstream,
                output / f"layer_weights_{task_name}.png",
                title=f"Learned layer weights, {task_name}",
            )
        for name, weights in weights_by_upstream.items():
            rows[name].setdefault("layer_weights", {})[task_name] = weights
    _measure_upstreams(
        rows, upstreams, device or "cpu", speed_seconds, speed_repeats, speed_rounds
    )
    report = {
        "tasks": list(tasks),
        "upstreams": [rows[name] for name, _ in upstreams],
        "run_seconds": run_seconds,
        "device": device or "cpu",
        "torch_threads": torch.get_num_threads(),
        "quick": quick,
        "recipe_args": list(recipe_args),
        "load_average": list(os.getloadavg()),
        "command": command,
    }
    if write_report:
        _write_report(report, output)
    return report


def _measure_upstreams(rows, upstreams, device, seconds, repeats, rounds):
    """Count parameters and time every upstream, round-robin.

    Interleaving the upstreams spreads the load of other jobs on a shared
    machine over all of them; the best round of each upstream counts.
    """
    from speechbrain_skill.downstream.speed import measure_speed
    from speechbrain_skill.lobes.upstream import SSLUpstream

    models = {}
    for name, source in upstreams:
        models[name] = SSLUpstream(_absolute_source(source)).to(device)
        rows[name].update(kind=models[name].kind, params=models[name].num_params())
    for _ in range(rounds):
        for name, model in models.items():
            speed = measure_speed(model, seconds, repeats, device=device)
            best = rows[name].get("speed")
            if best is None or speed["x_real_time"] > best["x_real_time"]:
                rows[name]["speed"] = speed
            rows[name]["cpu_ms_per_second"] = min(
                speed["cpu_ms_per_second"],
                rows[name].get("cpu_ms_per_second", float("inf")),
            )
    for row in rows.values():
        row["x_real_time"] = row["speed"]["x_real_time"]
        row["speed"]["rounds"] = rounds


def _absolute_source(source):
    """Local paths become absolute (recipes run from their own folder)."""
    prefix = "random:" if source.startswith("random:") else ""
    path = source[len(prefix) :]
    if os.path.exists(path):
        path = str(Path(path).resolve())
    return prefix + path


def _write_report(report, output):
    output.mkdir(parents=True, exist_ok=True)
    rows, tasks = report["upstreams"], report["tasks"]
    (output / "comparison.json").write_text(json.dumps(report, indent=2))
    plot_comparison(rows, tasks, output / "comparison.png")
    speed = rows[0]["speed"] if rows else {}
    notes = [
        "",
        "Metrics on each task's test set ("
        + ", ".join(f"{t}: {TASKS[t].report_set}" for t in tasks)
        + ").",
        f"Speed: audio seconds per second of compute of the upstream forward pass "
        f"(batch {speed.get('batch_size')}, {speed.get('audio_seconds_per_pass')} s "
        f"waveforms, fastest of {speed.get('repeats')} passes x "
        f"{speed.get('rounds')} rounds over all upstreams, device "
        f"{speed.get('device')}, {speed.get('threads')} threads). CPU ms per audio s: "
        "process CPU time per second of audio (least costly pass).",
        "Params: parameters of the SSL model (the learned layer weights not counted).",
        "Machine load average (1, 5, 15 min) after the runs: "
        + ", ".join(f"{value:.1f}" for value in report["load_average"])
        + ".",
        "Learned layer weights: "
        + ", ".join(f"layer_weights_{t}.png" for t in tasks)
        + "; run folders: <task>/<upstream>/.",
        "",
        f"Command: `{report['command']}`" if report["command"] else "",
        "",
    ]
    table = markdown_table(rows, tasks)
    (output / "comparison.md").write_text(
        "# Downstream comparison\n\n" + table + "\n" + "\n".join(notes)
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
        "--data_folder",
        action="append",
        required=True,
        help="data folder of every task, or TASK=PATH (repeat)",
    )
    parser.add_argument("--output", required=True)
    parser.add_argument(
        "--tasks", nargs="+", default=["kws", "sid", "asr"], choices=list(TASKS)
    )
    parser.add_argument("--quick", action="store_true", help="small-data CPU settings")
    parser.add_argument(
        "--recipe_args", default="", help="extra recipe overrides, one string"
    )
    parser.add_argument("--device", default=None)
    parser.add_argument("--in_process", action="store_true")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--speed_seconds", type=float, default=4.0)
    parser.add_argument("--speed_repeats", type=int, default=3)
    parser.add_argument("--speed_rounds", type=int, default=3)
    parser.add_argument("--recipes_root", default=str(RECIPES_ROOT))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    upstreams = [parse_upstream(spec) for spec in args.upstream]
    names = [name for name, _ in upstreams]
    if len(set(names)) != len(names):
        parser.error(f"Upstream names must be unique: {names}")
    start = time.time()
    report = compare(
        upstreams,
        parse_data_folders(args.data_folder, args.tasks),
        args.output,
        tasks=args.tasks,
        quick=args.quick,
        recipe_args=shlex.split(args.recipe_args),
        device=args.device,
        in_process=args.in_process,
        force=args.force,
        speed_seconds=args.speed_seconds,
        speed_repeats=args.speed_repeats,
        speed_rounds=args.speed_rounds,
        recipes_root=args.recipes_root,
        command="python -m speechbrain_skill.downstream.compare "
        + " ".join(shlex.quote(arg) for arg in (argv or sys.argv[1:])),
    )
    failed = [
        f"{task}/{row['name']}"
        for row in report["upstreams"]
        for task, value in row["metrics"].items()
        if value is None
    ]
    print(f"Report in {args.output}/comparison.md ({time.time() - start:.0f} s).")
    if failed:
        print(f"Failed runs (see their compare_run.log / log.txt): {failed}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
