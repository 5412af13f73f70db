r"""s3prl's downstream runner with this package's upstream registered.

Usage: the arguments of s3prl's ``run_downstream.py``, unchanged, with
``-u speechbrain_skill -k <student folder | hf folder | builtin:name>``::

    python -m speechbrain_skill.s3prl_bridge -m train -u speechbrain_skill \
        -k results/skill_wavlm/1986/student -d emotion \
        -c s3prl/s3prl/downstream/emotion/config.yaml -p exp/er_student

Two defaults differ from s3prl's: ``--device cpu`` when no GPU is present,
and a missing config stops at once (the PyPI package of s3prl ships no
downstream configs: pass ``-c`` from an s3prl checkout).
"""

import os
import sys

import torch

from speechbrain_skill.s3prl_bridge.hub import register


def _value(argv, *flags):
    for index, item in enumerate(argv):
        for flag in flags:
            if item == flag and index + 1 < len(argv):
                return argv[index + 1]
            if item.startswith(flag + "="):
                return item.split("=", 1)[1]
    return None


def prepare_arguments(argv, cuda_available=None):
    """s3prl's arguments with this launcher's defaults; check the config exists.

    Arguments
    ---------
    argv : list of str
        ``run_downstream`` arguments.
    cuda_available : bool, optional
        Defaults to ``torch.cuda.is_available()``.

    Returns
    -------
    list of str

    Example
    -------
    >>> prepare_arguments(["-m", "evaluate", "-e", "exp/x"], cuda_available=False)
    ['-m', 'evaluate', '-e', 'exp/x', '--device', 'cpu']
    """
    argv = list(argv)
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if not cuda_available and _value(argv, "--device") is None:
        argv += ["--device", "cpu"]
    resuming = _value(argv, "-e", "--past_exp") is not None
    config = _value(argv, "-c", "--config")
    downstream = _value(argv, "-d", "--downstream")
    if not resuming and "-a" not in argv and "--auto_resume" not in argv:
        if config is None and downstream is not None:
            config = f"./downstream/{downstream}/config.yaml"
        if config is not None and not os.path.isfile(config):
            raise SystemExit(
                f"s3prl downstream config not found: {config}. The s3prl package "
                "from PyPI ships no configs: pass -c <s3prl checkout>/s3prl/"
                f"downstream/{downstream or '<task>'}/config.yaml (or your own)."
            )
    return argv


def main(argv=None):
    """Register the hub entry, then run s3prl's ``run_downstream.main``."""
    argv = prepare_arguments(sys.argv[1:] if argv is None else argv)
    register()
    from s3prl import run_downstream

    saved = sys.argv
    sys.argv = ["run_downstream.py", *argv]
    try:
        run_downstream.main()
    finally:
        sys.argv = saved


if __name__ == "__main__":
    main()
