"""A SpeechBrain checkpointer that survives kills, corrupt files and full disks.

* SpeechBrain writes a checkpoint's meta file first and the parameter files
  after it, so a process killed in the middle leaves a directory that looks
  complete and fails to load on resume. Here a checkpoint counts only once a
  ``COMPLETE`` marker follows its last file; unmarked directories are
  ignored and removed at the next recovery.
* A complete checkpoint can still be damaged later (a truncated copy, a bad
  disk). Recovery then falls back to the newest checkpoint that loads, names
  every file it could not read, and sets the damaged checkpoint aside in
  ``<checkpoints>/unusable/``. So that there is something to fall back to,
  the two newest checkpoints are never deleted.
* Before writing, the free space is checked against the size of the state to
  save; a full disk (before or during the write) raises a
  :class:`~speechbrain_skill.training.disk_space.DiskFullError` naming the
  folder and the space needed. The older checkpoints are left untouched, so
  the same command resumes once space is freed.
"""

import logging
import shutil

import torch
from speechbrain.utils.checkpoints import (
    DEFAULT_LOAD_HOOKS,
    Checkpointer,
    ckpt_recency,
    get_default_hook,
)
from speechbrain.utils.distributed import ddp_barrier, if_main_process

from speechbrain_skill.training.disk_space import (
    DiskFullError,
    ensure_free_space,
    is_disk_full,
)

logger = logging.getLogger(__name__)
COMPLETE_MARKER = "COMPLETE"
UNUSABLE_FOLDER = "unusable"


class CheckpointFileError(RuntimeError):
    """A file of a checkpoint that could not be loaded.

    Arguments
    ---------
    path : str or os.PathLike
        The file.
    error : Exception
        What loading it raised.
    """

    def __init__(self, path, error):
        super().__init__(f"{path}: {type(error).__name__}: {error}")
        self.path = str(path)
        self.error = error


def _naming_failures(hook):
    """Wrap a load hook so that a failure names the file it was reading."""

    def load(obj, path, end_of_epoch):
        """Run the load hook; a failure names the file."""
        try:
            return hook(obj, path, end_of_epoch)
        except Exception as err:
            raise CheckpointFileError(path, err) from err

    return load


def state_size(obj):
    """Bytes of the tensors in ``obj.state_dict()`` (0 when it has none).

    Example
    -------
    >>> state_size(torch.nn.Linear(3, 2))  # 8 weights and biases, float32
    32
    """
    if not hasattr(obj, "state_dict"):
        return 0
    total, stack = 0, [obj.state_dict()]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            total += item.numel() * item.element_size()
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return total


class CompleteCheckpointer(Checkpointer):
    """``Checkpointer`` with complete-only checkpoints, fallback recovery, disk checks.

    Arguments
    ---------
    *args, **kwargs
        As :class:`speechbrain.utils.checkpoints.Checkpointer`.
    keep_newest : int
        Checkpoints, newest first, that deletion always spares (at least 2, so
        that a damaged newest checkpoint has a fallback).

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> layer = torch.nn.Linear(2, 2)
    >>> ckpt = CompleteCheckpointer(folder, recoverables={"layer": layer})
    >>> for step in range(3):
    ...     ckpt.save_and_keep_only(meta={"step": step}, num_to_keep=1)
    >>> sorted(c.meta["step"] for c in ckpt.list_checkpoints())
    [1, 2]
    """

    def __init__(self, *args, keep_newest=2, **kwargs):
        super().__init__(*args, **kwargs)
        if keep_newest < 2:
            raise ValueError(f"keep_newest must be at least 2, got {keep_newest}.")
        self.keep_newest = keep_newest

    # ------------------------------------------------------------ saving
    def estimated_size(self):
        """Bytes a new checkpoint needs: its tensors, or the last one's files."""
        from_state = sum(state_size(obj) for obj in self.recoverables.values())
        newest = self.find_checkpoint()
        on_disk = 0
        if newest is not None:
            on_disk = sum(p.stat().st_size for p in newest.path.iterdir())
        return max(from_state, on_disk)

    def save_checkpoint(self, *args, **kwargs):
        """Check the space, save, then write the completion marker (main process)."""
        hint = (
            "Free some space there (or choose another output folder) and run the "
            "same command again: it resumes from the last complete checkpoint."
        )
        needed = 0
        if if_main_process():
            self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
            # 5 % + 1 MiB for the meta files and the zip containers.
            needed = int(self.estimated_size() * 1.05) + 2**20
            ensure_free_space(self.checkpoints_dir, needed, "a checkpoint", hint)
        try:
            checkpoint = super().save_checkpoint(*args, **kwargs)
        except Exception as err:
            if if_main_process() and is_disk_full(err):
                self.remove_incomplete()
                raise DiskFullError(
                    self.checkpoints_dir, needed, "a checkpoint", hint
                ) from err
            raise
        if if_main_process() and checkpoint is not None:
            (checkpoint.path / COMPLETE_MARKER).touch()
        ddp_barrier()
        return checkpoint

    def delete_checkpoints(
        self,
        *,
        num_to_keep=1,
        min_keys=None,
        max_keys=None,
        importance_keys=None,
        ckpt_predicate=None,
        verbosity=logging.INFO,
    ):
        """Delete as SpeechBrain does, but always spare the ``keep_newest`` newest.

        Arguments are those of
        :meth:`speechbrain.utils.checkpoints.Checkpointer.delete_checkpoints`.
        """
        keys = [{"min_key": key} for key in min_keys or []]
        keys += [{"max_key": key} for key in max_keys or []]
        keys += [{"importance_key": key} for key in importance_keys or [ckpt_recency]]
        keep = {
            c.path for c in self.find_checkpoints(max_num_checkpoints=self.keep_newest)
        }
        candidates = set()
        for key in keys:
            found = self.find_checkpoints(ckpt_predicate=ckpt_predicate, **key)
            candidates.update(c.path for c in found)
            keep.update(c.path for c in found[:num_to_keep])
        super().delete_checkpoints(
            num_to_keep=0,
            ckpt_predicate=lambda ckpt: ckpt.path in candidates - keep,
            verbosity=verbosity,
        )

    # ------------------------------------------------------------ listing
    def _list_checkpoint_dirs(self):
        return [
            path
            for path in super()._list_checkpoint_dirs()
            if (path / COMPLETE_MARKER).is_file()
        ]

    def remove_incomplete(self):
        """Delete checkpoint directories left unfinished by a killed process."""
        if not if_main_process() or not self.checkpoints_dir.is_dir():
            return
        for path in Checkpointer._list_checkpoint_dirs(self):
            if not (path / COMPLETE_MARKER).is_file():
                logger.warning("Removing incomplete checkpoint %s", path)
                shutil.rmtree(path, ignore_errors=True)

    # ------------------------------------------------------------ loading
    def load_checkpoint(self, checkpoint):
        """Load ``checkpoint``; a failing file raises :class:`CheckpointFileError`."""
        hooks = self.custom_load_hooks
        self.custom_load_hooks = dict(hooks)
        for name, obj in self.recoverables.items():
            hook = hooks.get(name) or get_default_hook(obj, DEFAULT_LOAD_HOOKS)
            if hook is not None:
                self.custom_load_hooks[name] = _naming_failures(hook)
        try:
            super().load_checkpoint(checkpoint)
        finally:
            self.custom_load_hooks = hooks

    def recover_if_possible(
        self, importance_key=None, max_key=None, min_key=None, ckpt_predicate=None
    ):
        """Recover from the best checkpoint that loads (see the module doc).

        Arguments are those of
        :meth:`speechbrain.utils.checkpoints.Checkpointer.recover_if_possible`.

        Returns
        -------
        Checkpoint or None
            The checkpoint loaded.
        """
        self.remove_incomplete()
        ddp_barrier()
        candidates = self.find_checkpoints(
            importance_key=importance_key,
            max_key=max_key,
            min_key=min_key,
            ckpt_predicate=ckpt_predicate,
        )
        failed = []
        for checkpoint in candidates:
            try:
                self.load_checkpoint(checkpoint)
            except CheckpointFileError as err:
                logger.warning(
                    "Cannot load checkpoint %s: %s. Trying an older one.",
                    checkpoint.path,
                    err,
                )
                failed.append((checkpoint, err))
                continue
            if failed:
                logger.warning(
                    "Recovered from the older checkpoint %s; skipped: %s",
                    checkpoint.path,
                    "; ".join(err.path for _, err in failed),
                )
                self._set_aside([ckpt for ckpt, _ in failed])
            return checkpoint
        if failed:
            raise RuntimeError(
                f"No checkpoint in {self.checkpoints_dir} can be loaded:\n"
                + "\n".join(f"  {err}" for _, err in failed)
                + "\nMove these checkpoint folders away to start this training "
                "from scratch."
            )
        logger.info("Would load a checkpoint here, but none found yet.")
        return None

    def _set_aside(self, checkpoints):
        """Move damaged checkpoints to ``unusable/`` (kept for inspection).

        No synchronisation: every process reads the same files, so a process
        still trying a moved checkpoint fails on it and falls back the same way.
        """
        if not if_main_process():
            return
        target = self.checkpoints_dir / UNUSABLE_FOLDER
        target.mkdir(exist_ok=True)
        for checkpoint in checkpoints:
            destination = target / checkpoint.path.name
            shutil.move(str(checkpoint.path), str(destination))
            logger.warning(
                "Moved the damaged checkpoint to %s (delete it when done).",
                destination,
            )
