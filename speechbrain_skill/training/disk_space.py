"""Disk-full errors that name the folder and the space needed.

A full disk shows up deep inside torch's zip writer as ``unexpected pos`` or
``file write failed``, with the ``ENOSPC`` lost. :func:`ensure_free_space`
checks before a large write, :func:`is_disk_full` recognises the failure
after the fact, and :class:`DiskFullError` says where, how much, and that the
run resumes from its last complete checkpoint once space is freed.
"""

import errno
import shutil

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# What torch's zip writer says when a write comes up short.
TORCH_WRITE_FAILURES = ("unexpected pos", "file write failed", "PytorchStreamWriter")


def format_bytes(num_bytes):
    """Bytes in a human unit.

    Example
    -------
    >>> format_bytes(1536), format_bytes(3 * 1024**3)
    ('1.5 KiB', '3.0 GiB')
    """
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


class DiskFullError(OSError):
    """No room for a write: names the folder, the space needed and the space free.

    Arguments
    ---------
    folder : str or os.PathLike
        Where the write goes.
    needed : int
        Bytes the write needs (an estimate).
    what : str
        What was being written (e.g. ``a checkpoint``).
    hint : str
        How to proceed.

    Example
    -------
    >>> err = DiskFullError("/tmp", 2048, "a checkpoint")
    >>> err.errno == errno.ENOSPC and "needs about 2.0 KiB" in str(err)
    True
    """

    def __init__(self, folder, needed, what="the output", hint=""):
        free = free_bytes(folder)
        message = (
            f"No space left in {folder} for {what}: it needs about "
            f"{format_bytes(needed)}, {format_bytes(free)} are free. {hint}"
        ).strip()
        super().__init__(errno.ENOSPC, message)
        self.folder = str(folder)
        self.needed = int(needed)
        self.free = free

    def __str__(self):
        return self.strerror


def free_bytes(folder):
    """Bytes available to this user on the file system holding ``folder``.

    Example
    -------
    >>> free_bytes("/") >= 0
    True
    """
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


def ensure_free_space(folder, needed, what="the output", hint=""):
    """Raise :class:`DiskFullError` when ``folder``'s disk lacks ``needed`` bytes.

    Arguments
    ---------
    folder : str or os.PathLike
        An existing folder.
    needed : int
        Bytes about to be written.
    what, hint : str
        See :class:`DiskFullError`.

    Example
    -------
    >>> ensure_free_space("/", 0)
    >>> ensure_free_space("/", 2**70)
    Traceback (most recent call last):
    ...
    speechbrain_skill.training.disk_space.DiskFullError: No space left in / ...
    """
    if free_bytes(folder) < needed:
        raise DiskFullError(folder, needed, what, hint)


def is_disk_full(error):
    """Whether ``error`` (or an error it was raised from) is a full disk or quota.

    Torch's writer loses the ``errno``, so its short-write messages count too.

    Example
    -------
    >>> is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    True
    >>> is_disk_full(RuntimeError("[enforce fail] unexpected pos 64 vs 0"))
    True
    >>> is_disk_full(ValueError("bad value"))
    False
    """
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
            return True
        if isinstance(error, RuntimeError) and any(
            text in str(error) for text in TORCH_WRITE_FAILURES
        ):
            return True
        error = error.__cause__ or error.__context__
    return False
