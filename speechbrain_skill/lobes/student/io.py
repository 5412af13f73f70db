"""Self-contained student directories: ``config.json`` + ``model.safetensors``.

Loading needs only this package's model code and safetensors: no training
code, no Hugging Face download.
"""

import json
import os
from pathlib import Path

import torch

from speechbrain_skill.lobes.student.config import StudentConfig
from speechbrain_skill.lobes.student.model import PrunableSSLStudent
from speechbrain_skill.training.modules import unwrap

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
ARCHITECTURE = "PrunableSSLStudent"


def save_student(model, directory):
    """Write a student (pruned, gated or plain) to a directory.

    Arguments
    ---------
    model : PrunableSSLStudent
        The model (a DDP / DataParallel wrapper is unwrapped).
    directory : str or os.PathLike
        Created if needed; existing files of the same names are replaced.

    Returns
    -------
    str
        The directory.

    Example
    -------
    >>> import tempfile
    >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16)
    >>> path = save_student(PrunableSSLStudent(config), tempfile.mkdtemp())
    >>> sorted(os.listdir(path))
    ['config.json', 'model.safetensors']
    """
    from safetensors.torch import save_file

    model = unwrap(model)
    os.makedirs(directory, exist_ok=True)
    document = {"architecture": ARCHITECTURE, **model.config.to_dict()}
    Path(directory, CONFIG_NAME).write_text(
        json.dumps(document, indent=2, sort_keys=True)
    )
    tensors = {
        name: tensor.detach().cpu().contiguous()
        for name, tensor in model.state_dict().items()
    }
    save_file(tensors, str(Path(directory, WEIGHTS_NAME)), metadata={"format": "pt"})
    return str(directory)


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
    PrunableSSLStudent

    Example
    -------
    >>> import tempfile
    >>> student = PrunableSSLStudent(StudentConfig.uniform("wavlm", 32, 1, 4, 64, 16))
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
    model = PrunableSSLStudent(config)
    dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
    if len(dtypes) == 1:
        model = model.to(dtype=dtypes.pop())
    model.load_state_dict(state, strict=True)
    return model.to(map_location).eval()
