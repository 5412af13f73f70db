"""Linear CKA and unbiased HSIC between frame matrices (the maths).

With ``X`` and ``Y`` the (frames x dim) matrices of two layers, columns centred::

    CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F * ||Y^T Y||_F)

:func:`linear_cka` with ``unbiased=True`` uses the unbiased HSIC estimator of
Song et al. 2012, near 0 for independent features even on few frames;
:func:`minibatch_hsic_matrix` gives it for all layer pairs of a minibatch.
"""

import math

import numpy as np
import torch

MIN_HSIC_FRAMES = 4  # the unbiased HSIC estimator divides by n(n-3)


def _as_float64(x):
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float64)
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


def _check_pair(x, y):
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(
            f"Expected 2-d (frames, dim) matrices, got shapes {tuple(x.shape)} "
            f"and {tuple(y.shape)}."
        )
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"Both matrices need the same frames: {x.shape[0]} vs {y.shape[0]} rows."
        )


def unbiased_hsic(x, y):
    """Unbiased HSIC estimator (Song et al. 2012) with linear kernels.

    Computed in feature space, without forming the n x n Gram matrices. The
    estimator is invariant to translating either matrix and is an unbiased
    estimate of the population HSIC, so it is near 0 for independent features.

    Arguments
    ---------
    x : torch.Tensor or numpy.ndarray
        (n, p) features, n >= 4.
    y : torch.Tensor or numpy.ndarray
        (n, q) features of the same n frames.

    Returns
    -------
    float

    Example
    -------
    >>> x = torch.randn(100, 5, generator=torch.Generator().manual_seed(0)).double()
    >>> math.isclose(unbiased_hsic(x, x + 3.0), unbiased_hsic(x, x), rel_tol=1e-9)
    True
    """
    x, y = _as_float64(x), _as_float64(y)
    _check_pair(x, y)
    n = x.shape[0]
    if n < MIN_HSIC_FRAMES:
        raise ValueError(f"The unbiased HSIC needs at least 4 frames, got {n}.")
    # Gram matrices with zeroed diagonals, K~ = XX^T - diag(|x_k|^2), written
    # through feature-space quantities.
    x_sq, y_sq = (x * x).sum(1), (y * y).sum(1)
    x_sum, y_sum = x.sum(0), y.sum(0)
    trace_kl = (y.T @ x).square().sum() - (x_sq * y_sq).sum()
    k_total = x_sum @ x_sum - x_sq.sum()
    l_total = y_sum @ y_sum - y_sq.sum()
    k_rows, l_rows = x @ x_sum - x_sq, y @ y_sum - y_sq
    value = (
        trace_kl
        + k_total * l_total / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * (k_rows @ l_rows)
    ) / (n * (n - 3))
    return float(value)


def linear_cka(x, y, unbiased=False):
    """Linear CKA between two representations of the same frames, in memory.

    Arguments
    ---------
    x : torch.Tensor or numpy.ndarray
        (n, p) features, one row per frame.
    y : torch.Tensor or numpy.ndarray
        (n, q) features of the same frames.
    unbiased : bool
        Use the unbiased HSIC estimator (near 0 for independent features
        even on few frames) instead of the biased plug-in estimator.

    Returns
    -------
    float
        Similarity; 1 for identical representations. NaN if either side is
        constant over frames.

    Example
    -------
    >>> x = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    >>> round(linear_cka(x, 3.0 * x), 6)
    1.0
    """
    if unbiased:
        xy, xx, yy = unbiased_hsic(x, y), unbiased_hsic(x, x), unbiased_hsic(y, y)
        return _normalise(xy, xx, yy)
    x, y = _as_float64(x), _as_float64(y)
    _check_pair(x, y)
    x = x - x.mean(0)
    y = y - y.mean(0)
    numerator = (y.T @ x).square().sum()
    denominator = torch.linalg.norm(x.T @ x) * torch.linalg.norm(y.T @ y)
    return _normalise(float(numerator), float(denominator) ** 2, 1.0)


def _normalise(cross, self_x, self_y):
    if not (self_x > 0 and self_y > 0):
        return float("nan")
    return float(cross / math.sqrt(self_x * self_y))


def minibatch_hsic_matrix(frames, product_dtype=torch.float64):
    """Unbiased HSIC (linear kernel) between all pairs of states on one minibatch.

    The frames are centred in float64; the Gram products (the bulk of the
    work) run in ``product_dtype`` and everything after them in float64.

    Arguments
    ---------
    frames : torch.Tensor
        (num_states, n, dim) with n >= 4.
    product_dtype : torch.dtype
        Precision of the Gram products (float32: much faster on GPUs).

    Returns
    -------
    torch.Tensor
        (num_states, num_states) float64.

    Example
    -------
    >>> x = torch.randn(2, 30, 3, generator=torch.Generator().manual_seed(0))
    >>> hsic = minibatch_hsic_matrix(x)
    >>> abs(float(hsic[0, 1]) - unbiased_hsic(x[0], x[1])) < 1e-9
    True
    """
    n = frames.shape[1]
    if n < MIN_HSIC_FRAMES:
        raise ValueError(f"The unbiased HSIC needs at least 4 frames, got {n}.")
    x = frames.to(torch.float64)
    x = (x - x.mean(dim=1, keepdim=True)).to(product_dtype)  # shift invariant
    grams = (x @ x.transpose(1, 2)).to(torch.float64)
    grams.diagonal(dim1=1, dim2=2).zero_()
    flat = grams.reshape(grams.shape[0], -1)
    totals = flat.sum(dim=1)
    rows = grams.sum(dim=2)
    value = (
        flat @ flat.T
        + torch.outer(totals, totals) / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * (rows @ rows.T)
    )
    return value / (n * (n - 3))
