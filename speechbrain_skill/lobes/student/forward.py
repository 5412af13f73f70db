"""The student's forward computation, shared by every wrapper of its layers."""

import torch

from speechbrain_skill.lobes.frames import (
    conv_output_lengths,
    lengths_to_mask,
    normalize_waveforms,
)


class _ScaleGradient(torch.autograd.Function):
    """Identity forward, gradient multiplied by ``scale`` backward."""

    @staticmethod
    def forward(ctx, x, scale):
        """Identity (a view of ``x``)."""
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        """The incoming gradient times ``scale``."""
        return grad * ctx.scale, None


def scale_gradient(x, scale):
    """Identity forward; the gradient is multiplied by ``scale`` on the way back.

    Arguments
    ---------
    x : torch.Tensor
        Any tensor.
    scale : float
        Gradient multiplier.

    Returns
    -------
    torch.Tensor

    Example
    -------
    >>> x = torch.ones(2, requires_grad=True)
    >>> scale_gradient(x, 0.1).sum().backward()
    >>> x.grad.tolist()
    [0.10000000149011612, 0.10000000149011612]
    """
    return _ScaleGradient.apply(x, scale)


def student_hidden_states(
    model,
    config,
    wavs,
    lengths=None,
    num_layers=None,
    hidden_state_zero="transformer_input",
):
    """All hidden states of a student's layers on waveforms of known lengths.

    :class:`~speechbrain_skill.lobes.student.PrunableSSLEncoder`, its Hugging
    Face export and its ONNX export all compute their outputs here.

    Arguments
    ---------
    model : torch.nn.Module
        Holds ``feature_extractor``, ``feature_projection`` and ``encoder``.
    config : StudentConfig
        The architecture.
    wavs : torch.Tensor
        Waveforms (batch, samples).
    lengths : torch.Tensor, optional
        Real samples per utterance; None means no padding (and no mask).
    num_layers : int, optional
        Run only the first transformer layers.
    hidden_state_zero : str
        ``transformer_input`` (Hugging Face ``hidden_states[0]``) or
        ``projection`` (DPHuBERT reference: before the positional conv and the
        encoder LayerNorm).

    Returns
    -------
    states : list of torch.Tensor
        [state 0, output of each layer], each (batch, frames, hidden).
    frame_lens : torch.Tensor
        Real frames per utterance.

    Example
    -------
    >>> from speechbrain_skill.lobes.student import PrunableSSLEncoder, StudentConfig
    >>> student = PrunableSSLEncoder(StudentConfig.uniform("hubert", 32, 1, 4, 64, 16))
    >>> states, lens = student_hidden_states(student, student.config,
    ...     torch.randn(2, 8000), torch.tensor([8000, 4000]))
    >>> len(states), lens.tolist()
    (2, [24, 12])
    """
    masked = lengths is not None
    if not masked:
        lengths = torch.full(
            (wavs.shape[0],), wavs.shape[1], dtype=torch.long, device=wavs.device
        )
    lengths = lengths.to(wavs.device)
    if config.normalize_waveform:
        wavs = normalize_waveforms(wavs, lengths)
    features = model.feature_extractor(wavs).transpose(1, 2)
    scale = getattr(config, "feature_grad_scale", 1.0)
    if scale != 1.0 and torch.is_grad_enabled():
        features = scale_gradient(features, scale)
    frame_lens = conv_output_lengths(
        lengths, config.conv_kernels, config.conv_strides
    ).clamp(max=features.shape[1])
    frame_mask = lengths_to_mask(frame_lens, features.shape[1]) if masked else None
    states = model.encoder(
        model.feature_projection(features),
        frame_mask,
        num_layers=num_layers,
        state_zero_before_pos_conv=hidden_state_zero == "projection",
    )
    return states, frame_lens
