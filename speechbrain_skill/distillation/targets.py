"""Distillation targets: teacher layer groups, their means, student layer choice."""

import torch


def default_student_layers(groups):
    """Student layer that learns each group: the deepest teacher layer of the group.

    This is our documented default (the SKILL paper does not say); DPHuBERT's
    singleton groups give student layer i for teacher layer i.

    Example
    -------
    >>> default_student_layers([[0, 1], [2, 3, 5], [4]])
    [1, 5, 4]
    """
    return [max(group) for group in groups]


def group_targets(teacher_hidden, groups, weights=None):
    """Mean of the teacher hidden states of each group.

    Arguments
    ---------
    teacher_hidden : torch.Tensor
        (num_hidden_states, batch, frames, dim).
    groups : list of list of int
        Layer indices per group.
    weights : list of list of float, optional
        Per-layer weights inside each group (normalised to sum to one).

    Returns
    -------
    torch.Tensor
        (num_groups, batch, frames, dim).

    Example
    -------
    >>> hidden = torch.arange(4.0).view(4, 1, 1, 1)
    >>> group_targets(hidden, [[0, 2], [3]]).flatten().tolist()
    [1.0, 3.0]
    """
    targets = []
    for index, group in enumerate(groups):
        selected = teacher_hidden[group]
        if weights is None:
            targets.append(selected.mean(dim=0))
        else:
            w = torch.as_tensor(
                weights[index], dtype=selected.dtype, device=selected.device
            )
            w = (w / w.sum()).view(-1, *([1] * (selected.dim() - 1)))
            targets.append((selected * w).sum(dim=0))
    return torch.stack(targets)


def align_frames(student_hidden, teacher_hidden):
    """Trim both stacks to the shorter frame count (they may differ by one).

    Example
    -------
    >>> s, t = align_frames(torch.zeros(2, 1, 5, 3), torch.zeros(4, 1, 4, 3))
    >>> s.shape[2], t.shape[2]
    (4, 4)
    """
    frames = min(student_hidden.shape[-2], teacher_hidden.shape[-2])
    return student_hidden[..., :frames, :], teacher_hidden[..., :frames, :]
