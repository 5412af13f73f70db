"""One run per output folder: a live holder stops a second run, a killed one is not."""

import logging
import os
import signal
import socket
import subprocess
import sys

import pytest

from speechbrain_skill.training.run_lock import (
    LOCK_FILE,
    OutputFolderBusy,
    OutputFolderLock,
)

HOLD = """
import sys, time
from speechbrain_skill.training.run_lock import lock_output_folder
lock_output_folder(sys.argv[1])
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _holder(folder, seconds):
    """Another process that takes the lock the way train.py does."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "locked"
    return process


def test_second_run_stops_naming_the_running_process(tmp_path):
    holder = _holder(tmp_path, 60)
    try:
        with pytest.raises(OutputFolderBusy) as info:
            OutputFolderLock(tmp_path).acquire()
        message = str(info.value)
        assert f"{holder.pid} on host {socket.gethostname()}, started 20" in message
        assert str(tmp_path) in message
    finally:
        holder.kill()
        holder.wait()


def test_lock_of_a_killed_run_is_taken_over(tmp_path, caplog):
    holder = _holder(tmp_path, 60)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert str(holder.pid) in (tmp_path / LOCK_FILE).read_text()  # left behind
    with caplog.at_level(logging.WARNING):
        lock = OutputFolderLock(tmp_path).acquire()
    try:
        assert lock.previous["pid"] == holder.pid
        assert f"{holder.pid} on host" in caplog.text
        assert "taking it over" in caplog.text
        assert lock.holder()["pid"] == os.getpid()
    finally:
        lock.release()


def test_clean_exit_leaves_no_stale_lock(tmp_path):
    _holder(tmp_path, 0).wait()
    assert (tmp_path / LOCK_FILE).read_text() == ""
    lock = OutputFolderLock(tmp_path).acquire()
    assert lock.previous is None
    lock.release()
