"""SpeechBrain's docstring rule, run on ``speechbrain_skill/``.

Our own implementation of the rule of SpeechBrain's
``tests/utils/check_docstrings.py`` (speechbrain/speechbrain, as of commit
026a01733db3, the version the consistency tests of SpeechBrain 1.x run),
line for line in what it accepts:

* every ``.py`` file (paths holding ``__``, such as ``__init__.py``, are left
  out) starts with a docstring: its first counted line starts with ``"``
  (or ``r"``);
* after a one-line ``def name(...):`` whose name does not start with ``_``,
  and after a ``class ...:`` line, the next counted line starts with ``"``
  (or ``r"``).

Counted lines are stripped, non-empty, not comments, and hold neither
``>>>`` nor ``...`` (the original's reading, quirks included: a ``def``
spread over several lines, or annotated ``-> type:``, is not checked).
"""

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "speechbrain_skill"
DEF = re.compile(r"def\s(.*)\(.*\):")
CLASS = re.compile(r"class\s(.*):")


def _counted(lines):
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#") or ">>>" in line or "..." in line:
            continue
        yield line


def _is_docstring(line):
    return line.startswith('"') or line.startswith('r"')


def docstring_errors(path, text):
    """The errors SpeechBrain's check reports for one file, as strings."""
    errors, pending, first = [], None, True
    for line in _counted(text.splitlines()):
        if first or pending:
            if not _is_docstring(line):
                errors.append(pending or f"{path}: no module docstring")
            pending, first = None, False
            continue
        function = DEF.search(line) if line.startswith("def") else None
        if function and not function.group(1).startswith("_"):
            pending = f"{path}: function {function.group(1)} has no docstring"
        klass = CLASS.search(line) if line.startswith("class") else None
        if klass:
            pending = f"{path}: class {klass.group(1)} has no docstring"
    return errors


def test_the_rule_on_a_small_example():
    text = (
        '"""Module."""\n'
        "def documented(x):\n"
        '    """Yes."""\n'
        "def missing(x):\n"
        "    return x\n"
        "def _private(x):\n"
        "    return x\n"
        "def spread(\n"
        "    x,\n"
        "):\n"
        "    return x\n"
        "class Thing(object):\n"
        "    x = 1\n"
        "class Raw:\n"
        '    r"""Raw docstring."""\n'
    )
    assert docstring_errors("m.py", text) == [
        "m.py: function missing has no docstring",
        "m.py: class Thing(object) has no docstring",
    ]
    assert docstring_errors("m.py", "import os\n") == ["m.py: no module docstring"]


def test_speechbrain_skill_passes_speechbrains_docstring_check():
    files = [p for p in sorted(PACKAGE.rglob("*.py")) if "__" not in str(p)]
    assert len(files) > 50
    errors = []
    for path in files:
        errors += docstring_errors(path.relative_to(PACKAGE.parent), path.read_text())
    assert errors == []
