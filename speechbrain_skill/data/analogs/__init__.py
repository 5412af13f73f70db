"""Built-in analogs of the SUPERB datasets, one builder per task.

Each builder writes a small synthetic dataset in the *real* dataset's layout
(so the recipe's own preparation reads it) and returns the folder to pass as
``--data_folder``. Builders are deterministic for a seed and reuse a folder
that was built with the same settings.

:data:`ANALOG_BUILDERS` maps a task of
:data:`speechbrain_skill.downstream.compare.TASKS` to ``"module:function"``;
a new task adds one line. Every builder takes ``(output, seed=0, workers=2)``
and returns a :class:`pathlib.Path`; :func:`build_analog` gives it the folder
``<root>/<analog_folder>`` (a builder attribute, default its name without
``build_``), so builders that write one dataset share a folder.
"""

import importlib
from pathlib import Path

ANALOG_BUILDERS = {
    "asr": "speechbrain_skill.data.analogs.librispeech:build_corpus_analog",
    "kws": "speechbrain_skill.data.analogs.librispeech:build_corpus_analog",
    "sid": "speechbrain_skill.data.analogs.librispeech:build_corpus_analog",
    "pr": "speechbrain_skill.data.analogs.phonemes:build_pr_analog",
    "ic": "speechbrain_skill.data.analogs.intents:build_ic_analog",
    "sf": "speechbrain_skill.data.analogs.slots:build_sf_analog",
    "qbe": "speechbrain_skill.data.analogs.queries:build_qbe_analog",
    "asv": "speechbrain_skill.data.analogs.asv:build_asv_analog",
    "sd": "speechbrain_skill.data.analogs.sd:build_sd_analog",
    "er": "speechbrain_skill.data.analogs.er:build_er_analog",
}


def analog_builder(task):
    """The builder function of a task's analog.

    Example
    -------
    >>> analog_builder("ic").__name__
    'build_ic_analog'
    """
    if task not in ANALOG_BUILDERS:
        raise KeyError(
            f"No built-in analog for task '{task}'; known: {sorted(ANALOG_BUILDERS)}"
        )
    module, _, function = ANALOG_BUILDERS[task].partition(":")
    return getattr(importlib.import_module(module), function)


def build_analog(task, root, seed=0, workers=2):
    """Build (or reuse) the analog of ``task`` under ``root``; its data folder.

    The folder is ``<root>/<builder's analog_folder attribute>`` (default: its
    name without ``build_``), so tasks reading one dataset share it.
    """
    builder = analog_builder(task)
    name = getattr(builder, "analog_folder", builder.__name__.removeprefix("build_"))
    return builder(Path(root) / name, seed=seed, workers=workers)
