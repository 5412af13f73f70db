"""int8 ONNX export of a student: fused graph, int8 weight matmuls, the rest fp32.

The fp32 ONNX graph (:mod:`speechbrain_skill.export.onnx`) is first fused by
onnxruntime's transformer optimizer (GELU, bias + GELU, residual add +
LayerNorm into ``SkipLayerNormalization``), then its matrix multiplies whose
second input is a weight (the attention projections, the FFN, the feature
projection) are quantized dynamically: int8 weights (per tensor, symmetric),
uint8 activations quantized at run time, which onnxruntime runs as
``DynamicQuantizeMatMul`` / ``MatMulIntegerToFloat`` (VNNI on CPUs that have
it). What does not pay stays fp32, by measurement (docs/export.md):

* convolutions (the CNN feature extractor, the positional convolution):
  with onnxruntime's ``ConvInteger`` the whole Base+-shape student ran about
  3x slower than in fp32; re-expressing the strided convolutions as matrix
  multiplies to quantize them (strided slices + one MatMul per layer, or
  blocks of ``stride`` frames) gained nothing measurable: the copies they
  need cost what the int8 products save;
* the attention products (query x key, weights x value): both inputs are
  activations, small per-head matrices.

:func:`hidden_state_cosines` measures the fidelity of an int8 export.
"""

import collections
import logging
import tempfile
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

INT8_FOLDER = "onnx_int8"


def fuse_onnx(source, target):
    """Fuse a student's fp32 ONNX graph with onnxruntime's transformer optimizer.

    Arguments
    ---------
    source : str or os.PathLike
        fp32 ``.onnx`` file.
    target : str or os.PathLike
        Fused fp32 ``.onnx`` file.

    Returns
    -------
    dict
        Count of each fused operator (``Gelu``, ``SkipLayerNormalization``...).
    """
    from onnxruntime.transformers.optimizer import optimize_model

    # num_heads / hidden_size 0: read from the graph; attention is left unfused
    # (WavLM's gated relative-position bias matches none of its patterns).
    model = optimize_model(
        str(source), model_type="bert", num_heads=0, hidden_size=0, opt_level=1
    )
    model.save_model_to_file(str(target))
    stats = model.get_fused_operator_statistics()
    return {name: count for name, count in stats.items() if count}


def quantize_onnx(source, target, fuse=True):
    """Write the int8 form of a student's fp32 ONNX graph (see the module doc).

    Arguments
    ---------
    source : str or os.PathLike
        fp32 ``.onnx`` file written by
        :func:`speechbrain_skill.export.onnx.export_onnx`.
    target : str or os.PathLike
        Output ``.onnx`` file.
    fuse : bool
        Fuse GELU and LayerNorm first (:func:`fuse_onnx`).

    Returns
    -------
    dict
        ``fused`` (operator counts), ``int8_ops`` and ``fp32_ops`` (counts
        of each operator type in the written graph that runs in int8 / the
        compute operators kept in fp32).

    Example
    -------
    >>> import os
    >>> from speechbrain_skill.export.onnx import export_onnx, onnx_session, run_onnx
    >>> from speechbrain_skill.lobes.student import PrunableSSLEncoder, StudentConfig
    >>> folder = tempfile.mkdtemp()
    >>> student = PrunableSSLEncoder(StudentConfig.uniform("hubert", 32, 2, 4, 64, 16))
    >>> fp32 = export_onnx(student, os.path.join(folder, "fp32.onnx"))
    >>> int8 = os.path.join(folder, "int8.onnx")
    >>> info = quantize_onnx(fp32, int8)
    >>> info["fp32_ops"]["Conv"]  # 7 CNN layers + the positional convolution
    8
    >>> wavs, lengths = torch.randn(2, 8000), torch.tensor([8000, 5000])
    >>> ref, frames = run_onnx(onnx_session(fp32), wavs, lengths)
    >>> out, _ = run_onnx(onnx_session(int8), wavs, lengths)
    >>> min(hidden_state_cosines(out, ref, frames)) > 0.99
    True
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as scratch:
        fused = {}
        if fuse:
            fused_path = Path(scratch) / "fused.onnx"
            fused = fuse_onnx(source, fused_path)
            source = fused_path
        quantize_dynamic(
            str(source),
            str(target),
            op_types_to_quantize=["MatMul"],
            weight_type=QuantType.QInt8,
            extra_options={
                # Only products with a weight; activation x activation stays fp32.
                "MatMulConstBOnly": True,
                # The fused operators carry no shape-inference types.
                "DefaultTensorType": onnx.TensorProto.FLOAT,
            },
        )
    ops = collections.Counter(
        node.op_type for node in onnx.load(str(target)).graph.node
    )
    int8 = {op: n for op, n in ops.items() if "Integer" in op or "Quantize" in op}
    fp32 = {op: ops[op] for op in ("Conv", "MatMul", "Gemm") if ops.get(op)}
    return {"fused": fused, "int8_ops": int8, "fp32_ops": fp32}


def hidden_state_cosines(hidden, reference, frame_lengths):
    """Mean cosine similarity per hidden state over the real frames of a batch.

    Arguments
    ---------
    hidden, reference : torch.Tensor
        (layers + 1, batch, frames, dim), as the ONNX exports return them.
    frame_lengths : torch.Tensor
        Real frames of each batch row.

    Returns
    -------
    list of float
        One cosine per hidden state (entry 0: the first layer's input).

    Example
    -------
    >>> ref = torch.randn(2, 1, 3, 4)
    >>> out = ref.clone()
    >>> out[1, 0, 2] = -out[1, 0, 2]  # one frame flipped: cosine -1 there
    >>> [round(c, 4) for c in hidden_state_cosines(out, ref, torch.tensor([3]))]
    [1.0, 0.3333]
    >>> [round(c, 4) for c in hidden_state_cosines(out, ref, torch.tensor([2]))]
    [1.0, 1.0]
    """
    frames = torch.arange(hidden.shape[2])
    real = frames[None, :] < frame_lengths[:, None]
    cosine = torch.nn.functional.cosine_similarity(
        hidden.double(), reference.double(), dim=-1
    )
    return [float(layer[real].mean()) for layer in cosine]
