"""A SpeechBrain checkpointer that survives being killed while it writes.

SpeechBrain writes a checkpoint's meta file first and the parameter files
after it, so a process killed in the middle leaves a directory that looks
complete and fails to load (``EOFError``) on resume. This subclass marks a
checkpoint complete only after every file is written, ignores unmarked
directories, and removes them at the next recovery.
"""

import logging
import shutil

from speechbrain.utils.checkpoints import Checkpointer
from speechbrain.utils.distributed import ddp_barrier, if_main_process

logger = logging.getLogger(__name__)
COMPLETE_MARKER = "COMPLETE"


class CompleteCheckpointer(Checkpointer):
    """``Checkpointer`` whose checkpoints count only once fully written.

    Example
    -------
    >>> import tempfile, torch
    >>> folder = tempfile.mkdtemp()
    >>> layer = torch.nn.Linear(2, 2)
    >>> ckpt = CompleteCheckpointer(folder, recoverables={"layer": layer})
    >>> _ = ckpt.save_checkpoint()
    >>> len(ckpt.list_checkpoints())
    1
    """

    def save_checkpoint(self, *args, **kwargs):
        """Save, then write the completion marker (main process)."""
        checkpoint = super().save_checkpoint(*args, **kwargs)
        if if_main_process() and checkpoint is not None:
            (checkpoint.path / COMPLETE_MARKER).touch()
        ddp_barrier()
        return checkpoint

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

    def recover_if_possible(self, *args, **kwargs):
        """Drop incomplete checkpoints, then recover the usual way."""
        self.remove_incomplete()
        ddp_barrier()
        return super().recover_if_possible(*args, **kwargs)
