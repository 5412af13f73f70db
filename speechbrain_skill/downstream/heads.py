"""Task heads on top of upstream features (batch, frames, dim) + relative lengths.

* :class:`PooledClassifier`: linear projection, pooling over the real frames,
  linear classifier (SUPERB's keyword spotting and speaker identification
  heads use mean pooling).
* :class:`SlotClassifier`: one pooled vector, one classifier per slot (IC).
* :class:`FrameLinearHead`: per-frame projection + linear (PR, CTC).
* :class:`BiLSTMCTCHead`: a bidirectional LSTM over the real frames and a
  linear layer to the CTC vocabulary (SUPERB / MP3S ASR use 2 x 1024 units).

Both return log-probabilities and ignore padding frames.
"""

import torch

POOLINGS = ("mean", "stats")


def absolute_lengths(lens, num_frames):
    """Relative lengths (SpeechBrain convention) -> frame counts, at least 1.

    Arguments
    ---------
    lens : torch.Tensor
        Relative lengths in [0, 1].
    num_frames : int
        Padded number of frames.

    Returns
    -------
    torch.Tensor
        Long tensor.

    Example
    -------
    >>> absolute_lengths(torch.tensor([1.0, 0.5, 0.0]), 10).tolist()
    [10, 5, 1]
    """
    return torch.round(lens.float() * num_frames).long().clamp(1, num_frames)


def masked_pooling(feats, lens, pooling="mean"):
    """Pool over the real frames: mean, or mean and standard deviation.

    Arguments
    ---------
    feats : torch.Tensor
        (batch, frames, dim).
    lens : torch.Tensor
        Relative lengths.
    pooling : str
        ``mean`` (dim outputs) or ``stats`` (2 * dim outputs).

    Returns
    -------
    torch.Tensor
        (batch, dim) or (batch, 2 * dim).

    Example
    -------
    >>> feats = torch.tensor([[[1.0], [3.0], [100.0]]])
    >>> masked_pooling(feats, torch.tensor([2 / 3])).tolist()
    [[2.0]]
    >>> masked_pooling(feats, torch.tensor([2 / 3]), "stats").tolist()
    [[2.0, 1.0]]
    """
    if pooling not in POOLINGS:
        raise ValueError(f"Unknown pooling '{pooling}'; expected one of {POOLINGS}.")
    counts = absolute_lengths(lens, feats.shape[1]).to(feats.device)
    mask = torch.arange(feats.shape[1], device=feats.device)[None, :] < counts[:, None]
    mask = mask.unsqueeze(-1).to(feats.dtype)
    denominator = counts.unsqueeze(-1).to(feats.dtype)
    mean = (feats * mask).sum(dim=1) / denominator
    if pooling == "mean":
        return mean
    variance = (((feats - mean.unsqueeze(1)) * mask) ** 2).sum(dim=1) / denominator
    return torch.cat([mean, torch.sqrt(variance.clamp(min=1e-8))], dim=-1)


class PooledClassifier(torch.nn.Module):
    """Utterance classifier: projection -> pooling over real frames -> linear.

    Arguments
    ---------
    input_size : int
        Upstream feature dimension.
    num_classes : int
        Output classes.
    projection_size : int
        Width of the frame-level projection.
    pooling : str
        ``mean`` (SUPERB) or ``stats`` (mean and standard deviation).

    Example
    -------
    >>> head = PooledClassifier(8, 3, projection_size=4)
    >>> log_probs = head(torch.randn(2, 5, 8), torch.tensor([1.0, 0.6]))
    >>> log_probs.shape, [round(p, 4) for p in log_probs.exp().sum(-1).tolist()]
    (torch.Size([2, 3]), [1.0, 1.0])
    """

    def __init__(self, input_size, num_classes, projection_size=256, pooling="mean"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(
                f"Unknown pooling '{pooling}'; expected one of {POOLINGS}."
            )
        self.pooling = pooling
        self.projection = torch.nn.Linear(input_size, projection_size)
        pooled = projection_size * (2 if pooling == "stats" else 1)
        self.classifier = torch.nn.Linear(pooled, num_classes)

    def forward(self, feats, lens):
        """Log-probabilities (batch, num_classes)."""
        pooled = masked_pooling(self.projection(feats), lens, self.pooling)
        return torch.log_softmax(self.classifier(pooled), dim=-1)


class BiLSTMCTCHead(torch.nn.Module):
    """Bidirectional LSTM + linear layer to CTC log-probabilities.

    Padding frames are packed away, so the backward direction starts at each
    utterance's last real frame.

    Arguments
    ---------
    input_size : int
        Upstream feature dimension.
    vocab_size : int
        Output tokens, blank included.
    hidden_size : int
        LSTM units per direction.
    num_layers : int
        LSTM layers.
    dropout : float
        Dropout on the LSTM outputs (between layers and before the linear).

    Example
    -------
    >>> head = BiLSTMCTCHead(8, 5, hidden_size=4)
    >>> head(torch.randn(2, 6, 8), torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 6, 5])
    """

    def __init__(
        self, input_size, vocab_size, hidden_size=1024, num_layers=2, dropout=0.2
    ):
        super().__init__()
        self.lstm = torch.nn.LSTM(
            input_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = torch.nn.Dropout(dropout)
        self.output = torch.nn.Linear(2 * hidden_size, vocab_size)

    def forward(self, feats, lens):
        """Log-probabilities (batch, frames, vocab_size)."""
        num_frames = feats.shape[1]
        counts = absolute_lengths(lens, num_frames).cpu()
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            feats, counts, batch_first=True, enforce_sorted=False
        )
        output, _ = self.lstm(packed)
        output, _ = torch.nn.utils.rnn.pad_packed_sequence(
            output, batch_first=True, total_length=num_frames
        )
        return torch.log_softmax(self.output(self.dropout(output)), dim=-1)


class SlotClassifier(torch.nn.Module):
    """Several classifications of one utterance from one pooled vector.

    SUPERB's intent-classification head: a linear projection, mean pooling
    over the real frames and one linear layer whose outputs are split into
    one group per slot (action, object, location).

    Arguments
    ---------
    input_size : int
        Upstream feature dimension.
    slot_sizes : sequence of int
        Number of classes of each slot.
    projection_size : int
        Width of the frame-level projection.

    Example
    -------
    >>> head = SlotClassifier(8, [3, 2], projection_size=4)
    >>> outputs = head(torch.randn(2, 5, 8), torch.tensor([1.0, 0.6]))
    >>> [tuple(o.shape) for o in outputs]
    [(2, 3), (2, 2)]
    """

    def __init__(self, input_size, slot_sizes, projection_size=256):
        super().__init__()
        self.slot_sizes = [int(size) for size in slot_sizes]
        self.projection = torch.nn.Linear(input_size, projection_size)
        self.classifier = torch.nn.Linear(projection_size, sum(self.slot_sizes))

    def forward(self, feats, lens):
        """One log-probability tensor (batch, classes of the slot) per slot."""
        logits = self.classifier(masked_pooling(self.projection(feats), lens))
        return [
            torch.log_softmax(part, dim=-1)
            for part in torch.split(logits, self.slot_sizes, dim=-1)
        ]


class FrameLinearHead(torch.nn.Module):
    """Per-frame linear projection and linear output layer (SUPERB PR head).

    Arguments
    ---------
    input_size : int
        Upstream feature dimension.
    vocab_size : int
        Output tokens, blank included.
    projection_size : int
        Width of the projection (SUPERB: 256).

    Example
    -------
    >>> FrameLinearHead(8, 5, 4)(torch.randn(2, 6, 8), torch.ones(2)).shape
    torch.Size([2, 6, 5])
    """

    def __init__(self, input_size, vocab_size, projection_size=256):
        super().__init__()
        self.projection = torch.nn.Linear(input_size, projection_size)
        self.output = torch.nn.Linear(projection_size, vocab_size)

    def forward(self, feats, lens):
        """Log-probabilities (batch, frames, vocab_size)."""
        return torch.log_softmax(self.output(self.projection(feats)), dim=-1)
