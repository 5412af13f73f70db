import math

import pytest
import torch
import torch.nn.functional as F

from speechbrain_skill.distillation.lagrangian import (
    SparsityLagrangian,
    validate_target_sparsity,
)
from speechbrain_skill.distillation.losses import DistillationLoss, masked_l1
from speechbrain_skill.distillation.targets import (
    align_frames,
    default_student_layers,
    group_targets,
)
from speechbrain_skill.lobes.heads import LayerProjections, PredictionHeads


def _reference_loss(pred, target, lengths, cos_type):
    """Loop over utterances and frames: the textbook definition."""
    total = 0.0
    for p, t in zip(pred, target):
        abs_sum, count, cos_terms = 0.0, 0, []
        for b, length in enumerate(lengths):
            abs_sum += (p[b, :length] - t[b, :length]).abs().sum().item()
            count += length * p.shape[-1]
            for f in range(length):
                cos = F.cosine_similarity(p[b, f], t[b, f], dim=0).item()
                cos_terms.append(
                    -cos
                    if cos_type == "neg_cos"
                    else -math.log(1 / (1 + math.exp(-cos)))
                )
        total += abs_sum / count + sum(cos_terms) / len(cos_terms)
    return total / len(pred)


@pytest.mark.parametrize("cos_type", ["neg_cos", "neg_log_sigmoid"])
def test_loss_matches_a_per_frame_reference_and_ignores_padding(cos_type):
    torch.manual_seed(0)
    pred, target = torch.randn(3, 2, 6, 5), torch.randn(3, 2, 6, 5)
    lengths = [6, 4]
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    loss, parts = DistillationLoss(cos_type=cos_type)(pred, target, mask)
    assert float(loss) == pytest.approx(
        _reference_loss(pred, target, lengths, cos_type), rel=1e-5
    )
    # Garbage in the padding changes nothing.
    noisy = pred.clone()
    noisy[:, 1, 4:] = 1e3
    assert torch.allclose(
        DistillationLoss(cos_type=cos_type)(noisy, target, mask)[0], loss
    )
    assert set(parts) == {f"{kind}_{i}" for kind in ("l1", "cos") for i in range(3)}


def test_loss_weights_and_bad_type():
    x, y = torch.randn(1, 1, 3, 2), torch.randn(1, 1, 3, 2)
    mask = torch.ones(1, 3, dtype=torch.bool)
    only_l1 = DistillationLoss(l1_weight=2.0, cos_weight=0.0)(x, y, mask)[0]
    assert float(only_l1) == pytest.approx(2 * float(masked_l1(x[0], y[0], mask)))
    with pytest.raises(ValueError, match="cos_type"):
        DistillationLoss(cos_type="cosine")


def test_group_targets_are_group_means_and_weights_normalise():
    hidden = torch.randn(5, 2, 3, 4)
    targets = group_targets(hidden, [[0, 1, 2], [4]])
    assert torch.allclose(targets[0], (hidden[0] + hidden[1] + hidden[2]) / 3)
    assert torch.allclose(targets[1], hidden[4])
    weighted = group_targets(hidden, [[0, 1]], weights=[[3.0, 1.0]])
    assert torch.allclose(weighted[0], 0.75 * hidden[0] + 0.25 * hidden[1])


def test_default_student_layer_is_the_deepest_of_the_group():
    assert default_student_layers([[0], [4], [8], [12]]) == [0, 4, 8, 12]
    assert default_student_layers([[0, 1, 2], [3, 4, 5, 6, 7], [8, 9, 10, 11, 12]]) == [
        2,
        7,
        12,
    ]


def test_align_trims_to_the_shorter():
    s, t = align_frames(torch.zeros(2, 1, 50, 3), torch.zeros(2, 1, 49, 3))
    assert s.shape == t.shape == (2, 1, 49, 3)


def test_layer_projections_start_as_identity_and_train():
    heads = LayerProjections([1, 3], 4)
    hidden = torch.randn(4, 2, 3, 4)
    assert torch.equal(heads(hidden), hidden[[1, 3]])
    heads(hidden).sum().backward()
    assert all(p.grad is not None for p in heads.parameters())
    assert PredictionHeads(3, 4, 8, 4)(hidden).shape == (3, 2, 3, 4)


def test_shared_projection_is_one_linear_trained_by_all_its_targets():
    # DPHuBERT's distill_layers=0.4,8,12: target 0 alone, targets 1-3 share.
    heads = LayerProjections([0, 4, 8, 12], 4, sharing=[[0], [1, 2, 3]])
    assert len(list(heads.parameters())) == 4  # two Linear layers
    torch.manual_seed(0)
    with torch.no_grad():
        for p in heads.parameters():
            p.normal_()
    hidden = torch.randn(13, 2, 3, 4)
    out = heads(hidden)
    shared, own = heads.projections[1], heads.projections[0]
    assert torch.allclose(out[0], own(hidden[0]))
    for target, layer in ((1, 4), (2, 8), (3, 12)):
        assert torch.allclose(out[target], shared(hidden[layer]))
    # The shared weight's gradient is the sum of its three targets' gradients.
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    expected = sum(
        (weights[t].reshape(-1, 4).T @ hidden[layer].reshape(-1, 4))
        for t, layer in ((1, 4), (2, 8), (3, 12))
    )
    assert torch.allclose(shared.weight.grad, expected, atol=1e-5)
    with pytest.raises(ValueError, match="exactly once"):
        LayerProjections([0, 4, 8], 4, sharing=[[0], [1]])


def test_lagrangian_target_warmup_and_gradient_signs():
    lagrangian = SparsityLagrangian(0.6, warmup_steps=100)
    assert [lagrangian.target_at(s) for s in (0, 50, 100, 500)] == [0.0, 0.3, 0.6, 0.6]
    lagrangian.lambda1.data.fill_(1.0)
    lagrangian.lambda2.data.fill_(2.0)
    expected = torch.tensor(0.1, requires_grad=True)
    penalty, target = lagrangian(expected, step=100)
    gap = 0.1 - 0.6
    assert float(penalty) == pytest.approx(gap + 2 * gap**2)
    penalty.backward()
    # Gradient ascent on lambda1 follows d/d lambda1 = gap (< 0: sparsity below target).
    assert float(lagrangian.lambda1.grad) == pytest.approx(gap)
    assert float(lagrangian.lambda2.grad) == pytest.approx(gap**2)
    optimizer = torch.optim.AdamW(
        lagrangian.parameters(), lr=0.1, maximize=True, weight_decay=0
    )
    before = float(lagrangian.lambda1)
    optimizer.step()
    assert float(lagrangian.lambda1) < before  # ascent on a negative gradient


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.2, 1.5])
def test_target_sparsity_outside_0_1_is_refused(bad):
    with pytest.raises(ValueError, match=r"target_sparsity must be in \(0, 1\)"):
        validate_target_sparsity(bad)
    with pytest.raises(ValueError):
        SparsityLagrangian(bad, 10)
