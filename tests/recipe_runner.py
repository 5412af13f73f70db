"""The tests' one recipe runner, driven by the recipe tables ``tests/recipes/*.csv``.

The tables use SpeechBrain's format (``tests/recipes/<Dataset>.csv`` in its
repository): one row per recipe yaml with its script, data preparation,
README, debug flags and checks. In ``test_debug_flags``, ``{builtin_corpus}``
stands for the small built-in corpus the tests generate (see
``tests/recipes/README.md``). Every recipe run of the tests goes through
:func:`run_recipe`, with the debug flags of its row changed where a test
needs it (:func:`recipe_args`).
"""

import csv
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TABLES = REPO / "tests" / "recipes"
RECIPE = REPO / "recipes" / "LibriSpeech" / "distillation"


def recipe_rows():
    """Every row of ``tests/recipes/*.csv`` as a dict, with an ``id``."""
    rows = []
    for table in sorted(TABLES.glob("*.csv")):
        with open(table, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle, skipinitialspace=True)
            for number, row in enumerate(reader, start=2):
                row = {key: (value or "").strip() for key, value in row.items()}
                row["id"] = f"{table.stem}_row_{number:02d}"
                rows.append(row)
    return rows


def recipe_row(hparam_file):
    """The table row of a recipe yaml (a path, or a distillation yaml's name)."""
    path = Path(hparam_file)
    if not path.is_absolute() and len(path.parts) == 1:
        path = RECIPE / "hparams" / path
    path = path.resolve()
    for row in recipe_rows():
        if (REPO / row["Hparam_file"]).resolve() == path:
            return row
    raise KeyError(f"{hparam_file} is not in tests/recipes/*.csv")


def parse_flags(text):
    """``--key=value`` / ``--flag`` words -> ordered dict (a bare flag is True)."""
    flags = {}
    for word in shlex.split(text):
        key, sep, value = word[2:].partition("=")
        flags[key] = value if sep else True
    return flags


def as_args(flags):
    """Inverse of :func:`parse_flags` (None values are left out)."""
    return [
        f"--{key}" if value is True else f"--{key}={value}"
        for key, value in flags.items()
        if value is not None
    ]


def recipe_args(hparam_file, output, builtin_corpus, **changes):
    """The row's debug flags with ``changes`` (None removes a flag) and the output.

    ``builtin_corpus`` is the corpus folder, or a mapping of every placeholder
    (``builtin_corpus``, ``analog_<task>``) to its folder.
    """
    row = recipe_row(hparam_file)
    if isinstance(builtin_corpus, Mapping):
        text = row["test_debug_flags"].format_map(builtin_corpus)
    else:
        text = row["test_debug_flags"].format(builtin_corpus=builtin_corpus)
    flags = parse_flags(text)
    flags.update(
        {key: None if value is None else str(value) for key, value in changes.items()}
    )
    flags["output_folder"] = output
    return as_args(flags)


def run_recipe(
    hparam_file,
    args,
    timeout=900,
    background=False,
    expect_failure=False,
    launcher=(),
    cwd=None,
):
    """Run a recipe's script with its yaml and ``args`` in a subprocess.

    Arguments
    ---------
    hparam_file : str or os.PathLike
        The yaml (see :func:`recipe_row`); the script comes from its row.
    args : list of str
        Command-line arguments after the yaml.
    timeout : float
        Seconds.
    background : bool
        Return the running ``Popen`` (stdout piped, stderr merged).
    expect_failure : bool
        The run must fail; its log is returned.
    launcher : sequence of str
        Arguments of ``python -m torch.distributed.run`` for a DDP run.
    cwd : str or os.PathLike, optional
        Working folder (default: the script's folder).

    Returns
    -------
    str or subprocess.Popen
        The log (stdout + stderr), or the process when ``background``.
    """
    row = recipe_row(hparam_file)
    script = REPO / row["Script_file"]
    python = [sys.executable]
    if launcher:
        python += ["-m", "torch.distributed.run", *launcher]
    cmd = [*python, str(script), str(REPO / row["Hparam_file"]), *map(str, args)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    options = dict(cwd=cwd or script.parent, env=env, text=True)
    if background:
        return subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **options
        )
    result = subprocess.run(cmd, capture_output=True, timeout=timeout, **options)
    log = result.stdout + result.stderr
    if expect_failure:
        assert result.returncode != 0, f"{script.name} should have failed:\n{log}"
    elif result.returncode != 0:
        raise AssertionError(
            f"{script.name} failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
        )
    return log


def missing_files(row, output):
    """Files of the row's ``file_exists=[...]`` check absent from ``output``."""
    match = re.search(r"file_exists=\[(.*?)\]", row["test_debug_checks"])
    names = [name.strip() for name in match.group(1).split(",")] if match else []
    return [name for name in names if not (Path(output) / name).exists()]
