"""Stage records: a finished stage is reused only while its inputs are unchanged.

A stage's fingerprint is a hash of the settings that determine its output and
of the fingerprints of its inputs (the previous stage, the teacher's weights,
the data manifests). Each stage keeps ``<folder>/<stage>.json`` with its
fingerprint, settings and inputs; a finished stage adds its summary. On a
rerun in the same folder:

* same fingerprint, finished: the stage is skipped and its summary reused;
* same fingerprint, unfinished: the stage resumes from its checkpoints;
* different fingerprint: by default (``on_stale="recompute"``) the stage's
  outputs are deleted and it runs again; the stages after it take its
  fingerprint as an input, so they run again too. With ``on_stale="stop"``
  the run stops instead, naming what changed.
"""

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch
from speechbrain.utils.distributed import ddp_barrier, if_main_process

from speechbrain_skill.changes import describe_changes

logger = logging.getLogger(__name__)

ON_STALE = ("recompute", "stop")


class StaleStageError(RuntimeError):
    """A stage's recorded output no longer matches its settings or inputs."""


def fingerprint(value):
    """Short hash of a json-serialisable value (dict keys in sorted order).

    Arguments
    ---------
    value : object
        Settings: numbers, strings, lists, dicts (other objects by ``str``).

    Returns
    -------
    str
        16 hexadecimal digits.

    Example
    -------
    >>> fingerprint({"a": 1, "b": [2, 3]}) == fingerprint({"b": [2, 3], "a": 1})
    True
    >>> fingerprint({"a": 1}) == fingerprint({"a": 2})
    False
    """
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_fingerprint(path):
    """Hash of a file's bytes (e.g. a csv manifest).

    Arguments
    ---------
    path : str or os.PathLike
        The file.

    Returns
    -------
    str
        16 hexadecimal digits.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.csv")
    >>> with open(path, "w") as handle:
    ...     _ = handle.write("ID,duration")
    >>> first = file_fingerprint(path)
    >>> with open(path, "a") as handle:
    ...     _ = handle.write(",wav")
    >>> file_fingerprint(path) == first
    False
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def folder_fingerprint(path):
    """Summary of the files under ``path``: count, bytes, hash of names, sizes, mtimes.

    Costs one ``stat`` per file, no reading (seconds for LibriSpeech's 290k
    files), and changes when a file is added, deleted, replaced or rewritten:
    the data-folder input of a preparation stage.

    Arguments
    ---------
    path : str or os.PathLike
        A folder (walked recursively, links followed) or a single file.

    Returns
    -------
    str
        ``"<files> files, <bytes> bytes, <16 hexadecimal digits>"``; a missing
        path has 0 files.

    Example
    -------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "a.flac"), "w") as handle:
    ...     _ = handle.write("hello")
    >>> before = folder_fingerprint(folder)
    >>> before.startswith("1 files, 5 bytes")
    True
    >>> with open(os.path.join(folder, "b.flac"), "w") as handle:
    ...     _ = handle.write("!")
    >>> folder_fingerprint(folder) == before
    False
    """
    root = Path(path)
    lines, total = [], 0
    if root.is_file():
        stat = root.stat()
        lines.append(f"{root.name}\t{stat.st_size}\t{stat.st_mtime_ns}\n")
        total = stat.st_size
    folders = [""] if root.is_dir() else []
    while folders:  # os.scandir: one stat per file, ~2x faster than os.walk
        relative = folders.pop()
        with os.scandir(root / relative) as entries:
            for entry in entries:
                name = f"{relative}/{entry.name}" if relative else entry.name
                try:
                    if entry.is_dir():
                        folders.append(name)
                        continue
                    stat = entry.stat()
                except FileNotFoundError:  # a dangling link
                    continue
                lines.append(f"{name}\t{stat.st_size}\t{stat.st_mtime_ns}\n")
                total += stat.st_size
    digest = hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()[:16]
    return f"{len(lines)} files, {total} bytes, {digest}"


def module_fingerprint(module):
    """Hash of a module's weights and buffers (names, dtypes, shapes, values).

    Arguments
    ---------
    module : torch.nn.Module
        E.g. the teacher.

    Returns
    -------
    str
        16 hexadecimal digits.

    Example
    -------
    >>> layer = torch.nn.Linear(2, 2)
    >>> before = module_fingerprint(layer)
    >>> with torch.no_grad():
    ...     layer.bias[0] += 1e-6
    >>> module_fingerprint(layer) == before
    False
    """
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tensor.dtype}:{tensor.numel()};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def remove_output(path):
    """Delete a file, or empty a folder (the folder itself stays).

    Example
    -------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(folder, "CKPT+1"))
    >>> remove_output(folder)
    >>> os.listdir(folder)
    []
    """
    path = Path(path)
    if path.is_dir():
        for child in path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    elif path.exists() or path.is_symlink():
        path.unlink()


class Stage:
    """One stage of a run: its fingerprint, whether it is finished, its summary.

    Made by :meth:`StageRecords.stage`; call :meth:`finish` when the stage's
    outputs are written.
    """

    def __init__(self, records, name, key, settings, inputs, summary=None):
        self.records = records
        self.name = name
        self.fingerprint = key
        self.settings = settings
        self.inputs = inputs
        self.summary = summary

    @property
    def done(self):
        """True when the stage finished earlier with the same fingerprint."""
        return self.summary is not None

    def finish(self, summary):
        """Record the finished stage with its summary (main process writes)."""
        self.summary = summary
        self.records.write(self, "finished")
        return summary


class StageRecords:
    """The records of a run's stages, kept in one folder.

    Arguments
    ---------
    folder : str or os.PathLike
        Where ``<stage>.json`` files live (e.g. ``<output_folder>/stages``).
    on_stale : str
        ``"recompute"`` (default): a stage whose fingerprint changed is
        deleted and run again, and so are the stages after it;
        ``"stop"``: raise :class:`StaleStageError` naming what changed.

    Example
    -------
    >>> import tempfile
    >>> records = StageRecords(tempfile.mkdtemp())
    >>> stage = records.stage("groups", settings={"k": 3}, inputs={})
    >>> stage.done
    False
    >>> stage.finish({"groups": [[0, 1], [2]]})
    {'groups': [[0, 1], [2]]}
    >>> records.stage("groups", settings={"k": 3}, inputs={}).summary
    {'groups': [[0, 1], [2]]}
    >>> records.stage("groups", settings={"k": 2}, inputs={}).done
    False
    >>> records.on_stale = "stop"
    >>> _ = records.stage("groups", settings={"k": 4}, inputs={})
    Traceback (most recent call last):
      ...
    speechbrain_skill.training.stage_records.StaleStageError: Stage 'groups' ...
    """

    def __init__(self, folder, on_stale="recompute"):
        if on_stale not in ON_STALE:
            raise ValueError(f"on_stale must be one of {ON_STALE}, got {on_stale!r}.")
        self.folder = Path(folder)
        self.on_stale = on_stale

    def path(self, name):
        """The record file of stage ``name``."""
        return self.folder / f"{name}.json"

    def read(self, name):
        """The stored record of stage ``name``, or None."""
        path = self.path(name)
        return json.loads(path.read_text()) if path.is_file() else None

    def stage(self, name, settings, inputs, outputs=()):
        """Open stage ``name``: finished and unchanged, resumable, or (re)started.

        Arguments
        ---------
        name : str
            Stage name (file name of its record).
        settings : dict
            The resolved settings that determine the stage's output.
        inputs : dict
            Fingerprints of what the stage reads (previous stage, teacher, data).
        outputs : iterable of str or os.PathLike
            Files and folders the stage writes (checkpoints included): before
            a stale stage runs again, files are deleted and folders emptied
            (kept, since e.g. a checkpointer already points at them).

        Returns
        -------
        Stage
        """
        settings = json.loads(json.dumps(settings, default=str))
        key = fingerprint({"settings": settings, "inputs": inputs})
        record = self.read(name)
        # Every process decides from the same record: none may write first.
        ddp_barrier()
        if record is not None and record.get("fingerprint") == key:
            if record.get("status") == "finished":
                logger.info("Stage %s: unchanged (%s), skipped.", name, key)
                return Stage(self, name, key, settings, inputs, record["summary"])
            logger.info("Stage %s: resuming (%s).", name, key)
            return Stage(self, name, key, settings, inputs)
        if record is not None:
            self.stale(name, record, settings, inputs, outputs)
        stage = Stage(self, name, key, settings, inputs)
        self.write(stage, "started")
        return stage

    def stale(self, name, record, settings, inputs, outputs):
        """Stop or clear a stage whose settings or inputs changed."""
        changes = describe_changes(record.get("settings", {}), settings)
        changes += [
            f"input {change}"
            for change in describe_changes(record.get("inputs", {}), inputs)
        ]
        state = "finished" if record.get("status") == "finished" else "started"
        message = (
            f"Stage '{name}' in {self.folder.parent} was {state} with other "
            f"settings or inputs: {'; '.join(changes) or 'unknown (old record)'}."
        )
        if self.on_stale == "stop":
            raise StaleStageError(
                message + " Rerun with --on_stale=recompute to recompute it and "
                "the stages after it, or give another --output_folder."
            )
        logger.warning("%s Recomputing it and the stages after it.", message)
        if if_main_process():
            for path in outputs:
                remove_output(path)
        ddp_barrier()

    def write(self, stage, status):
        """Write the record of ``stage`` (main process), then synchronise."""
        if if_main_process():
            content = dict(
                status=status,
                fingerprint=stage.fingerprint,
                settings=stage.settings,
                inputs=stage.inputs,
            )
            if stage.summary is not None:
                content["summary"] = stage.summary
            path = self.path(stage.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(content, indent=2, default=str) + "\n")
            os.replace(tmp, path)
        ddp_barrier()
