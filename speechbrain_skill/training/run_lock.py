"""One run per output folder: a lock that names its holder and heals after a kill.

Two runs writing the same output folder corrupt each other (the second loads
the first's checkpoints, the first then fails to delete them). The recipes
call :func:`lock_output_folder` first: it holds an exclusive ``flock`` on
``<output_folder>/run.lock`` for the life of the process and writes who holds
it (pid, host, start time, command) into that file.

* A second run in the same folder stops at once, naming the running process.
* The kernel drops the lock when its process dies, however it dies; a run
  that finds the lock free but the file still filled in knows the previous
  run was killed, says so, and takes the folder over.
"""

import atexit
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

from speechbrain.utils.distributed import ddp_broadcast, if_main_process

logger = logging.getLogger(__name__)
LOCK_FILE = "run.lock"
_HELD = {}


class OutputFolderBusy(RuntimeError):
    """Another live process holds the output folder."""


class OutputFolderLock:
    """An exclusive lock on an output folder, held by one process.

    Arguments
    ---------
    folder : str or os.PathLike
        The output folder (created when missing).

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> lock = OutputFolderLock(folder).acquire()
    >>> lock.holder()["pid"] == os.getpid()
    True
    >>> OutputFolderLock(folder).acquire()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    speechbrain_skill.training.run_lock.OutputFolderBusy: Output folder ... in use ...
    >>> lock.release()
    >>> OutputFolderLock(folder).acquire().release()
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.fd = None
        self.previous = None

    def holder(self):
        """What the lock file says about its holder (empty dict when none)."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        try:
            return json.loads(text) if text.strip() else {}
        except ValueError:
            return {"note": text.strip()[:200]}

    def acquire(self):
        """Take the lock, or raise :class:`OutputFolderBusy` naming the holder.

        Returns
        -------
        OutputFolderLock
            ``self``; :attr:`previous` describes a killed run whose lock was
            taken over (None after a clean exit).
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise OutputFolderBusy(self._busy_message()) from None
            # A file system without locks (some network mounts): run unlocked.
            logger.warning(
                "Cannot lock %s (%s); two runs in this folder would not be detected.",
                self.path,
                err,
            )
        self.fd = fd
        previous = self.holder()
        if previous:
            self.previous = previous
            logger.warning(
                "Output folder %s was left locked by %s, which is no longer "
                "running (killed or crashed); taking it over. Its checkpoints "
                "are resumed as usual.",
                self.folder,
                _describe(previous),
            )
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        os.fsync(fd)
        return self

    def release(self):
        """Mark a clean exit (empty lock file) and unlock."""
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def _busy_message(self):
        return (
            f"Output folder {self.folder} is in use by process "
            f"{_describe(self.holder())}. Wait for that run to finish or stop it, "
            "or give this run another --output_folder."
        )


def _describe(holder):
    if not holder.get("pid"):
        return "an unknown process (the lock file is empty)"
    return (
        f"{holder['pid']} on host {holder.get('host')}, started "
        f"{holder.get('started')} ({holder.get('command')})"
    )


def lock_output_folder(folder):
    """Lock ``folder`` for this run (the main process holds it until exit).

    Under DDP the main process takes the lock and every process learns the
    outcome, so a busy folder stops all of them at once.

    Arguments
    ---------
    folder : str or os.PathLike
        The run's output folder.

    Returns
    -------
    OutputFolderLock or None
        The lock on the main process (None on the others).

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> lock_output_folder(folder) is lock_output_folder(folder)
    True
    """
    key = str(Path(folder).resolve())
    lock, error = _HELD.get(key), None
    if lock is None and if_main_process():
        try:
            lock = OutputFolderLock(folder).acquire()
            _HELD[key] = lock
            atexit.register(lock.release)
        except OutputFolderBusy as err:
            error = str(err)
    error = ddp_broadcast(error)
    if error:
        raise OutputFolderBusy(error)
    return lock
