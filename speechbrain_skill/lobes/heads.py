"""Heads that map student hidden states to distillation targets.

* :class:`LayerProjections` (DPHuBERT / SKILL): a linear map per target (or
  shared by a group of targets), applied to a chosen student layer,
  initialised to the identity so that a student copied from the teacher
  starts from its own layer.
* :class:`PredictionHeads` (DistilHuBERT): one Linear-GELU-Linear per target,
  all on the last student layer (or on a chosen layer per target).

Both take the stacked student hidden states (layers + 1, batch, frames, dim)
and return (num_targets, batch, frames, dim).
"""

import torch


class LayerProjections(torch.nn.Module):
    """Linear projections of selected student layers, identity-initialised.

    Targets may share a projection: DPHuBERT's reference recipe
    (``distill_layers=0.4,8,12``) gives target 0 (hidden state 0) its own
    Linear and targets 4, 8 and 12 ONE shared Linear, i.e.
    ``sharing=[[0], [1, 2, 3]]``. By default each target has its own.

    Arguments
    ---------
    student_layers : list of int
        Student hidden-state index feeding each target.
    input_dim : int
        Student hidden size.
    output_dim : int, optional
        Teacher hidden size (defaults to ``input_dim``). Identity init needs
        equal sizes; otherwise the default PyTorch init is used.
    sharing : list of list of int, optional
        Groups of target positions (0-based, in the order of
        ``student_layers``) that share one projection; every target in
        exactly one group. None: one projection per target.

    Example
    -------
    >>> heads = LayerProjections([0, 2], 4)
    >>> hidden = torch.randn(3, 1, 5, 4)
    >>> torch.allclose(heads(hidden), hidden[[0, 2]])
    True
    >>> shared = LayerProjections([0, 1, 2], 4, sharing=[[0], [1, 2]])
    >>> len(shared.projections), shared.projection(1) is shared.projection(2)
    (2, True)
    """

    def __init__(self, student_layers, input_dim, output_dim=None, sharing=None):
        super().__init__()
        output_dim = output_dim or input_dim
        self.student_layers = [int(layer) for layer in student_layers]
        count = len(self.student_layers)
        if sharing is None:
            sharing = [[target] for target in range(count)]
        positions = sorted(int(t) for group in sharing for t in group)
        if positions != list(range(count)):
            raise ValueError(
                f"sharing {sharing} must name each of the {count} targets "
                f"(0..{count - 1}) exactly once."
            )
        self.target_projection = [0] * count
        for index, group in enumerate(sharing):
            for target in group:
                self.target_projection[int(target)] = index
        self.projections = torch.nn.ModuleList(
            torch.nn.Linear(input_dim, output_dim) for _ in sharing
        )
        if input_dim == output_dim:
            for layer in self.projections:
                torch.nn.init.eye_(layer.weight)
                torch.nn.init.zeros_(layer.bias)

    def projection(self, target):
        """The Linear that maps target ``target`` (position in ``student_layers``)."""
        return self.projections[self.target_projection[target]]

    def forward(self, student_hidden):
        """Project each selected student layer."""
        return torch.stack(
            [
                self.projection(target)(student_hidden[layer])
                for target, layer in enumerate(self.student_layers)
            ]
        )


class PredictionHeads(torch.nn.Module):
    """DistilHuBERT prediction heads: one Linear-GELU-Linear per target.

    DistilHuBERT puts every head on the last student layer; a list of
    ``student_layers`` may name another layer per head (the pipeline passes
    the list, e.g. ``[2, 2, 2]`` for a 2-layer student).

    Arguments
    ---------
    student_layers : int or list of int
        Student hidden-state index feeding each head, or the number of heads
        (all on the last hidden state).
    input_dim : int
        Student hidden size.
    hidden_dim : int, optional
        Inner width of each head (defaults to ``input_dim``).
    output_dim : int, optional
        Teacher hidden size (defaults to ``input_dim``).

    Example
    -------
    >>> heads = PredictionHeads([2, 2, 2], 8, hidden_dim=16)
    >>> heads(torch.randn(3, 2, 5, 8)).shape
    torch.Size([3, 2, 5, 8])
    >>> PredictionHeads(2, 8)(torch.randn(3, 2, 5, 8)).shape
    torch.Size([2, 2, 5, 8])
    """

    def __init__(self, student_layers, input_dim, hidden_dim=None, output_dim=None):
        super().__init__()
        if isinstance(student_layers, int):
            student_layers = [-1] * student_layers
        self.student_layers = [int(layer) for layer in student_layers]
        hidden_dim = hidden_dim or input_dim
        output_dim = output_dim or input_dim
        self.heads = torch.nn.ModuleList(
            torch.nn.Sequential(
                torch.nn.Linear(input_dim, hidden_dim),
                torch.nn.GELU(),
                torch.nn.Linear(hidden_dim, output_dim),
            )
            for _ in self.student_layers
        )

    def forward(self, student_hidden):
        """Predict every target from its student hidden state."""
        return torch.stack(
            [
                head(student_hidden[layer])
                for head, layer in zip(self.heads, self.student_layers)
            ]
        )
