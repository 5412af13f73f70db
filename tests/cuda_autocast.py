"""CUDA autocast's op lists, reproduced on CPU with a ``TorchFunctionMode``.

CPU autocast is no stand-in for CUDA autocast: it keeps ``layer_norm``,
``group_norm`` and ``sum`` in bf16 and knows no fp16 list worth the name,
while CUDA runs them in fp32. :class:`EmulatedCudaAutocast` applies CUDA's
rules (``aten/src/ATen/autocast_mode.cpp``, CUDA section) at the Python API
level, so dtype flows can be tested on a machine without a GPU:

* lower-precision ops (matmuls, convolutions, attention) cast their float32
  (and other-half) tensor arguments to the autocast dtype;
* fp32 ops (norms, pointwise transcendental functions, losses, reductions
  such as ``sum`` and ``softmax``) cast half arguments to float32;
* promote ops (``cat``, ``stack``, ``addcmul``, ...) cast to the widest
  floating dtype among their arguments;
* every other op runs in the dtypes it is given (ordinary type promotion:
  fp16 * fp32 gives fp32, an *upcast*).

float64 tensors are never cast (as on CUDA). The mode also records every
upcast of a binary pointwise op (a half tensor of more than one element
meeting a float32 tensor) with the Python function it happened in, and
every call of a lower-precision op, so tests can check where activations
leave the autocast dtype.
"""

import sys
from collections import Counter

import torch
from torch.overrides import TorchFunctionMode

LOWER_PRECISION_OPS = frozenset(
    """_convolution conv1d conv2d conv3d conv_tbc conv_transpose1d conv_transpose2d
    conv_transpose3d convolution prelu addmm addmv addr matmul __matmul__ __rmatmul__
    einsum mm mv linear addbmm baddbmm bmm chain_matmul linalg_multi_dot lstm_cell
    gru_cell rnn_tanh_cell rnn_relu_cell scaled_dot_product_attention""".split()
)
FP32_OPS = frozenset(
    """acos asin cosh erfinv exp expm1 log log10 log2 log1p reciprocal rsqrt sinh
    tan pow __pow__ __rpow__ softplus layer_norm native_layer_norm group_norm
    frobenius_norm nuclear_norm norm cosine_similarity poisson_nll_loss
    cosine_embedding_loss nll_loss hinge_embedding_loss kl_div l1_loss
    smooth_l1_loss huber_loss mse_loss margin_ranking_loss multilabel_margin_loss
    soft_margin_loss triplet_margin_loss multi_margin_loss
    binary_cross_entropy_with_logits dist pdist cdist renorm logsumexp prod
    softmax log_softmax cumprod cumsum linalg_vector_norm linalg_matrix_norm
    sum""".split()
)
PROMOTE_OPS = frozenset(
    """addcdiv addcmul atan2 bilinear cross dot grid_sampler index_put scatter_add
    tensordot cat stack vdot""".split()
)
# Out-of-place only: an in-place op keeps its first operand's dtype.
BINARY_POINTWISE_OPS = frozenset(
    """mul __mul__ __rmul__ add __add__ __radd__ sub __sub__ __rsub__ div
    __truediv__ __rtruediv__ where""".split()
)
HALF_DTYPES = (torch.float16, torch.bfloat16)
ELIGIBLE = (torch.float32, torch.float16, torch.bfloat16)


def _map_tensors(value, fn):
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_map_tensors(v, fn) for v in value)
    if isinstance(value, dict):
        return {k: _map_tensors(v, fn) for k, v in value.items()}
    return value


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


def _caster(dtype):
    def cast(tensor):
        if tensor.dtype in ELIGIBLE and tensor.dtype != dtype:
            return tensor.to(dtype)
        return tensor

    return cast


def _caller(depth_limit=12):
    """``file:qualname`` of the nearest caller outside this module and torch."""
    frame = sys._getframe(2)
    for _ in range(depth_limit):
        if frame is None:
            break
        path = frame.f_code.co_filename
        if "speechbrain_skill" in path or "/tests/" in path:
            if not path.endswith("cuda_autocast.py"):
                name = path.rsplit("/", 1)[-1]
                return f"{name}:{frame.f_code.co_qualname}"
        frame = frame.f_back
    return "?"


class EmulatedCudaAutocast(TorchFunctionMode):
    """Run the enclosed code with CUDA autocast's dtype rules, on any device.

    Arguments
    ---------
    dtype : torch.dtype
        ``torch.float16`` or ``torch.bfloat16``.

    Attributes
    ----------
    upcasts : collections.Counter
        ``file:qualname`` -> number of binary pointwise ops that turned a
        half tensor (more than one element) into float32.
    lower_calls : list of (str, torch.dtype, torch.dtype)
        (op name, dtype of the first tensor argument before the cast, output
        dtype) of every lower-precision op.

    Example
    -------
    >>> with EmulatedCudaAutocast(torch.float16) as mode:
    ...     y = torch.nn.functional.linear(torch.randn(2, 3), torch.randn(4, 3))
    ...     z = torch.nn.functional.layer_norm(y, (4,))
    >>> y.dtype, z.dtype
    (torch.float16, torch.float32)
    """

    def __init__(self, dtype=torch.float16):
        super().__init__()
        if dtype not in HALF_DTYPES:
            raise ValueError(f"dtype must be float16 or bfloat16, got {dtype}")
        self.dtype = dtype
        self.upcasts = Counter()
        self.lower_calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in LOWER_PRECISION_OPS:
            first = next(_tensors(args), None)
            cast = _caster(self.dtype)
            out = func(*_map_tensors(args, cast), **_map_tensors(kwargs, cast))
            if first is not None and isinstance(out, torch.Tensor):
                self.lower_calls.append((name, first.dtype, out.dtype))
            return out
        if name in FP32_OPS and not kwargs.get("dtype"):
            cast = _caster(torch.float32)
            return func(*_map_tensors(args, cast), **_map_tensors(kwargs, cast))
        if name in PROMOTE_OPS:
            dtypes = [t.dtype for t in _tensors(args) if t.dtype in ELIGIBLE]
            if dtypes:
                widest = torch.float32 if torch.float32 in dtypes else dtypes[0]
                cast = _caster(widest)
                args = _map_tensors(args, cast)
            return func(*args, **kwargs)
        out = func(*args, **kwargs)
        if name in BINARY_POINTWISE_OPS and isinstance(out, torch.Tensor):
            inputs = list(_tensors(args))
            if out.dtype == torch.float32 and any(
                t.dtype in HALF_DTYPES and t.numel() > 1 for t in inputs
            ):
                self.upcasts[_caller()] += 1
        return out
