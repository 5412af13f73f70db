"""Smoke test of every recipe, driven by the recipe tables ``tests/recipes/*.csv``.

Each row's script runs with its yaml and ``test_debug_flags`` on the small
built-in corpus, then the ``file_exists`` and ``performance_check`` entries of
``test_debug_checks`` are verified (SpeechBrain's format; see
``tests/recipes/README.md``). The runs are shared with the other recipe tests
through the ``recipe_run`` fixture.
"""

import re

import pytest
from recipe_runner import missing_files, recipe_rows

ROWS = recipe_rows()


def performance_failures(row, output):
    """Failed ``performance_check=[file, variable, <threshold, epoch: N]`` entries."""
    failures = []
    for check in re.findall(r"performance_check=\[(.*?)\]", row["test_debug_checks"]):
        name, variable, threshold, epoch = (part.strip() for part in check.split(","))
        lines = [
            line
            for line in (output / name).read_text().splitlines()
            if epoch in line and f"{variable}:" in line
        ]
        number = r"([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)"
        found = re.search(re.escape(variable) + r"\s*:\s*" + number, lines[-1])
        value, bound = float(found.group(1)), float(threshold.lstrip("<>="))
        ok = {
            "<=": value <= bound,
            ">=": value >= bound,
            "<": value < bound,
            ">": value > bound,
            "==": value == bound,
        }[re.match(r"[<>=]+", threshold).group()]
        if not ok:
            failures.append(f"{name}: {variable} = {value}, wanted {threshold}")
    return failures


@pytest.mark.slow
@pytest.mark.parametrize("row", ROWS, ids=lambda row: row["id"])
def test_recipe_runs_with_its_debug_flags(row, recipe_run):
    output, _ = recipe_run(row["Hparam_file"])
    assert not missing_files(row, output)
    assert not performance_failures(row, output)
