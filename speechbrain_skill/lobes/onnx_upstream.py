"""A student's ONNX export (fp32 or int8) as a frozen upstream model.

The downstream recipes take a ``.onnx`` file written by the exporter (the
``onnx`` or ``onnx_int8`` folder of a student) as ``upstream_source``, so a
deployed graph is scored on the same task, head and protocol as the PyTorch
student it came from: e.g. the accuracy change of int8 quantization.
onnxruntime runs it on the CPU; only frozen (SUPERB) use is possible.
"""

from pathlib import Path
from types import SimpleNamespace

import torch

from speechbrain_skill.export.onnx import onnx_session, run_onnx
from speechbrain_skill.lobes.frames import relative_to_absolute
from speechbrain_skill.lobes.hf_ssl import TeacherLoadError

ONNX_SUFFIX = ".onnx"


def is_onnx_file(source):
    """Tell whether an upstream source is an ONNX graph file.

    Arguments
    ---------
    source : str or os.PathLike
        Any upstream source.

    Returns
    -------
    bool

    Example
    -------
    >>> is_onnx_file("student/onnx_int8/student.onnx"), is_onnx_file("builtin:x")
    (True, False)
    """
    return str(source).endswith(ONNX_SUFFIX)


def graph_parameter_count(path):
    """Elements of the weight tensors (initializers) of an ONNX graph.

    int8 weights count like fp32 ones; quantization scales and zero points
    (one element each per tensor) are counted too.

    Arguments
    ---------
    path : str or os.PathLike
        The ``.onnx`` file.

    Returns
    -------
    int

    Example
    -------
    >>> import os, tempfile
    >>> from speechbrain_skill.export.onnx import export_onnx
    >>> from speechbrain_skill.lobes.student import PrunableSSLEncoder, StudentConfig
    >>> student = PrunableSSLEncoder(StudentConfig.uniform("hubert", 32, 2, 4, 64, 16))
    >>> path = export_onnx(student, os.path.join(tempfile.mkdtemp(), "s.onnx"))
    >>> weights = sum(p.numel() for p in student.parameters())
    >>> graph_parameter_count(path) >= 0.9 * weights
    True
    """
    import math

    import onnx

    graph = onnx.load(str(path)).graph
    return sum(math.prod(t.dims) for t in graph.initializer)


class OnnxSSLModel(torch.nn.Module):
    """Run an exported student graph in onnxruntime, with the upstream interface.

    ``model(wavs, wav_lens) -> (hidden [L+1, B, T, C], frame_lens)``, like the
    PyTorch models behind :class:`~speechbrain_skill.lobes.upstream.SSLUpstream`.
    The graph has no trainable parameters here.

    Arguments
    ---------
    path : str or os.PathLike
        The ``.onnx`` file (inputs ``wavs`` and ``wav_lengths``, outputs
        ``hidden_states`` and ``frame_lengths``:
        :mod:`speechbrain_skill.export.onnx`).
    threads : int, optional
        onnxruntime intra-op threads; default: torch's thread count.

    Example
    -------
    >>> import os, tempfile
    >>> from speechbrain_skill.export.onnx import export_onnx
    >>> from speechbrain_skill.lobes.student import PrunableSSLEncoder, StudentConfig
    >>> student = PrunableSSLEncoder(StudentConfig.uniform("hubert", 32, 2, 4, 64, 16))
    >>> path = export_onnx(student, os.path.join(tempfile.mkdtemp(), "s.onnx"))
    >>> model = OnnxSSLModel(path)
    >>> hidden, frames = model(torch.randn(2, 8000), torch.tensor([1.0, 0.5]))
    >>> hidden.shape, frames.tolist(), model.num_hidden_states, model.config.hidden_size
    (torch.Size([3, 2, 24, 32]), [24, 12], 3, 32)
    """

    def __init__(self, path, threads=None):
        super().__init__()
        self.path = str(path)
        if not Path(self.path).is_file():
            raise TeacherLoadError(
                f"No ONNX graph at '{self.path}'; a student's exports are written by "
                "python -m speechbrain_skill.export STUDENT --formats onnx onnx_int8."
            )
        self.threads = threads if threads is not None else torch.get_num_threads()
        self.session = onnx_session(self.path, self.threads)
        hidden, _ = run_onnx(self.session, torch.zeros(1, 16000), torch.tensor([16000]))
        self.num_hidden_states = hidden.shape[0]
        self.config = SimpleNamespace(hidden_size=hidden.shape[-1], model_type="onnx")
        self.parameter_count = graph_parameter_count(self.path)

    def forward(self, wavs, wav_lens=None):
        """Hidden states and frame counts of a padded batch (relative lengths)."""
        if wav_lens is None:
            lengths = torch.full((wavs.shape[0],), wavs.shape[1], dtype=torch.long)
        else:
            lengths = relative_to_absolute(wav_lens.cpu(), wavs.shape[1])
        hidden, frames = run_onnx(self.session, wavs, lengths)
        return hidden.to(wavs.device), frames.to(wavs.device)

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("session")
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.session = onnx_session(self.path, self.threads)
