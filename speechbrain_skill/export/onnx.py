"""ONNX export of a student: dynamic batch and length, all hidden states out.

Inputs: ``wavs`` (batch, samples) float32 at 16 kHz and ``wav_lengths``
(batch,) int64, the real samples of each row. Outputs: ``hidden_states``
(num_layers + 1, batch, frames, hidden), indexed like Hugging Face
``output_hidden_states``, and ``frame_lengths`` (batch,) int64. The graph is
the student's own forward (:func:`student_hidden_states`), traced with the
TorchScript exporter; :func:`run_onnx` runs it in onnxruntime.
"""

import logging
import warnings

import torch

from speechbrain_skill.lobes.student.forward import student_hidden_states
from speechbrain_skill.training.modules import unwrap

logger = logging.getLogger(__name__)

ONNX_NAME = "student.onnx"
INPUT_NAMES = ("wavs", "wav_lengths")
OUTPUT_NAMES = ("hidden_states", "frame_lengths")
OPSET = 17


class OnnxStudent(torch.nn.Module):
    """The student's forward on absolute lengths, stacked hidden states out.

    Arguments
    ---------
    student : PrunableSSLEncoder
        A gate-free student.

    Example
    -------
    >>> from speechbrain_skill.lobes.student import PrunableSSLEncoder, StudentConfig
    >>> student = PrunableSSLEncoder(StudentConfig.uniform("hubert", 32, 1, 4, 64, 16))
    >>> hidden, lens = OnnxStudent(student)(torch.randn(2, 8000),
    ...                                      torch.tensor([8000, 4000]))
    >>> hidden.shape, lens.tolist()
    (torch.Size([2, 2, 24, 32]), [24, 12])
    """

    def __init__(self, student):
        super().__init__()
        self.student = unwrap(student)

    def forward(self, wavs, wav_lengths):
        """Stacked hidden states and frame lengths of a padded batch."""
        states, frame_lens = student_hidden_states(
            self.student, self.student.config, wavs, wav_lengths
        )
        return torch.stack(states, dim=0), frame_lens


def export_onnx(student, path, example_seconds=1.0):
    """Write a student as an ONNX graph with dynamic batch and length axes.

    Arguments
    ---------
    student : PrunableSSLEncoder
        A gate-free student (it is exported in eval mode, on the CPU, fp32).
    path : str or os.PathLike
        Output ``.onnx`` file.
    example_seconds : float
        Length of the tracing example (any length works at run time).

    Returns
    -------
    str
        The path.

    Example
    -------
    >>> import tempfile, os
    >>> from speechbrain_skill.lobes.student import PrunableSSLEncoder, StudentConfig
    >>> student = PrunableSSLEncoder(StudentConfig.uniform("hubert", 32, 1, 4, 64, 16))
    >>> path = export_onnx(student, os.path.join(tempfile.mkdtemp(), "s.onnx"))
    >>> wavs, lengths = torch.randn(3, 9000), torch.tensor([9000, 5000, 3000])
    >>> hidden, frames = run_onnx(onnx_session(path), wavs, lengths)
    >>> reference, reference_frames = OnnxStudent(student.eval())(wavs, lengths)
    >>> frames.tolist() == reference_frames.tolist()
    True
    >>> bool((hidden[:, 2, :9] - reference[:, 2, :9]).abs().max() < 1e-4)
    True
    """
    student = unwrap(student)
    if student.config.prunable_structures:
        raise ValueError(
            "No ONNX export of a student with gates: materialise it with prune()."
        )
    student = student.eval()
    model = OnnxStudent(student).cpu().float().eval()
    num_samples = int(example_seconds * 16000)
    wavs = torch.zeros(2, num_samples)
    lengths = torch.tensor([num_samples, num_samples // 2])
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter warns about its own deprecation and traced sizes.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (wavs, lengths),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={
                "wavs": {0: "batch", 1: "samples"},
                "wav_lengths": {0: "batch"},
                "hidden_states": {1: "batch", 2: "frames"},
                "frame_lengths": {0: "batch"},
            },
        )
    return str(path)


def onnx_session(path, threads=None):
    """An onnxruntime CPU session of an exported student.

    Arguments
    ---------
    path : str or os.PathLike
        The ``.onnx`` file.
    threads : int, optional
        Intra-op threads (default: onnxruntime's choice).

    Returns
    -------
    onnxruntime.InferenceSession
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(
        str(path), options, providers=["CPUExecutionProvider"]
    )


def run_onnx(session, wavs, wav_lengths):
    """Run an exported student on a padded batch.

    Arguments
    ---------
    session : onnxruntime.InferenceSession
        See :func:`onnx_session`.
    wavs : torch.Tensor
        (batch, samples).
    wav_lengths : torch.Tensor
        Real samples per row.

    Returns
    -------
    hidden_states : torch.Tensor
        (num_layers + 1, batch, frames, hidden).
    frame_lengths : torch.Tensor
    """
    hidden, frames = session.run(
        list(OUTPUT_NAMES),
        {
            "wavs": wavs.detach().cpu().float().numpy(),
            "wav_lengths": wav_lengths.detach().cpu().long().numpy(),
        },
    )
    return torch.from_numpy(hidden), torch.from_numpy(frames)


def onnx_signature(student_config):
    """``config.json`` of an ONNX folder: inputs, outputs, opset, the architecture.

    Arguments
    ---------
    student_config : StudentConfig
        The exported student's architecture.

    Returns
    -------
    dict

    Example
    -------
    >>> from speechbrain_skill.lobes.student import StudentConfig
    >>> onnx_signature(StudentConfig.uniform("hubert", 32, 1, 4, 64, 16))["inputs"]
    ['wavs', 'wav_lengths']
    """
    return {
        "file": ONNX_NAME,
        "opset": OPSET,
        "inputs": list(INPUT_NAMES),
        "outputs": list(OUTPUT_NAMES),
        "sample_rate": 16000,
        "student": student_config.to_dict(),
    }
