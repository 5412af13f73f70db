"""Self-contained student directories: ``config.json`` + ``model.safetensors``.

Loading needs only this package's model code and safetensors: no training
code, no Hugging Face download.
"""

import json
from pathlib import Path

import torch

from speechbrain_skill.export.folder import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    write_model_folder,
)
from speechbrain_skill.lobes.student.config import StudentConfig
from speechbrain_skill.lobes.student.model import PrunableSSLEncoder
from speechbrain_skill.training.modules import unwrap

ARCHITECTURE = "PrunableSSLEncoder"


def save_student(model, directory, modules=None, files=None, readme=None):
    """Write a student (pruned, gated or plain) to a directory.

    Arguments
    ---------
    model : PrunableSSLEncoder
        The model (a DDP / DataParallel wrapper is unwrapped).
    directory : str or os.PathLike
        Created if needed; existing files of the same names are replaced.
    modules : dict, optional
        Modules saved beside it as ``<name>.ckpt`` (the distillation heads,
        an enhancement head).
    files : dict, optional
        Other files by name (e.g. ``hyperparams.yaml``).
    readme : str, optional
        Model card.

    Returns
    -------
    str
        The directory.

    Example
    -------
    >>> import os, tempfile
    >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16)
    >>> path = save_student(PrunableSSLEncoder(config), tempfile.mkdtemp())
    >>> sorted(os.listdir(path))
    ['config.json', 'model.safetensors']
    """
    model = unwrap(model)
    document = {"architecture": ARCHITECTURE, **model.config.to_dict()}
    return write_model_folder(
        directory,
        document,
        tensors=model.state_dict(),
        modules=modules,
        files=files,
        readme=readme,
    )


def load_student(directory, map_location="cpu"):
    """Load a student saved by :func:`save_student`, in eval mode.

    Arguments
    ---------
    directory : str or os.PathLike
        The saved directory.
    map_location : str or torch.device
        Device of the loaded model.

    Returns
    -------
    PrunableSSLEncoder

    Example
    -------
    >>> import tempfile
    >>> student = PrunableSSLEncoder(StudentConfig.uniform("wavlm", 32, 1, 4, 64, 16))
    >>> path = save_student(student, tempfile.mkdtemp())
    >>> load_student(path).config == student.config
    True
    """
    from safetensors.torch import load_file

    config_path = Path(directory, CONFIG_NAME)
    weights_path = Path(directory, WEIGHTS_NAME)
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: not a saved student directory."
            )
    document = json.loads(config_path.read_text())
    architecture = document.pop("architecture", ARCHITECTURE)
    if architecture != ARCHITECTURE:
        raise ValueError(f"{directory} holds a '{architecture}', not a {ARCHITECTURE}.")
    config = StudentConfig.from_dict(document)
    state = load_file(str(weights_path), device=str(torch.device(map_location)))
    model = PrunableSSLEncoder(config)
    dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
    if len(dtypes) == 1:
        model = model.to(dtype=dtypes.pop())
    model.load_state_dict(state, strict=True)
    return model.to(map_location).eval()
