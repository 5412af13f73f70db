"""Hard-concrete gates: sampling statistics, eval rule, initialisation, gradients."""

import math

import torch
from student_helpers import tiny_student_config

from speechbrain_skill.lobes.student import HardConcreteGate, PrunableSSLEncoder

LOG_ALPHAS = torch.tensor([-3.0, -1.0, 0.0, 0.5, 2.0, 4.6])


def gate_with(log_alpha):
    gate = HardConcreteGate(len(log_alpha))
    with torch.no_grad():
        gate.log_alpha.copy_(log_alpha)
    return gate


def test_expected_l0_formula_matches_monte_carlo():
    gate = gate_with(LOG_ALPHAS).train()
    torch.manual_seed(0)
    num_samples = 20000
    with torch.no_grad():
        samples = torch.stack([gate() for _ in range(num_samples)])
    nonzero_rate = (samples > 0).double().mean(0)
    # Closed form P(z > 0) derived independently from the sampling equations:
    # z > 0 <=> s > -l / (r - l) <=> noise > beta * logit(-l / (r - l)) - log_alpha.
    threshold = -gate.low / (gate.high - gate.low)
    logit = math.log(threshold / (1 - threshold))
    closed_form = torch.sigmoid(LOG_ALPHAS.double() - gate.temperature * logit)
    formula = gate.keep_probability().detach().double()
    assert torch.allclose(formula, closed_form, atol=1e-6)
    standard_error = (formula * (1 - formula) / num_samples).sqrt()
    assert ((nonzero_rate - formula).abs() <= 4 * standard_error + 1e-3).all()
    assert (samples >= 0).all() and (samples <= 1).all()
    # The stretch makes exact zeros and ones both occur.
    assert (samples == 0).any() and (samples == 1).any()


def test_training_samples_vary_eval_is_deterministic():
    gate = gate_with(LOG_ALPHAS)
    gate.train()
    assert not torch.equal(gate(), gate())
    gate.eval()
    first = gate()
    assert torch.equal(first, gate())


def reference_eval_mask(log_alpha, beta=2.0 / 3.0, low=-0.1, high=1.1):
    """The DPHuBERT reference's eval rule, written out from its definition.

    num_zeros = round(n - expected L0) (Python round); soft value of every
    unit sigmoid(log_alpha / beta * 0.8); the num_zeros smallest set to 0.
    """
    values = [float(a) for a in log_alpha]
    n = len(values)
    l0 = sum(1 / (1 + math.exp(-(a - beta * math.log(-low / high)))) for a in values)
    num_zeros = round(n - l0)
    soft = [1 / (1 + math.exp(-a / beta * 0.8)) for a in values]
    dropped = sorted(range(n), key=lambda i: soft[i])[:num_zeros]
    return [0.0 if i in dropped else soft[i] for i in range(n)], n - num_zeros


def test_eval_mask_follows_the_reference_rule():
    generator = torch.Generator().manual_seed(0)
    cases = [LOG_ALPHAS]
    # Gates after training: spread log_alpha, many near the decision boundary.
    cases += [torch.randn(n, generator=generator) * 3 - 1 for n in (5, 12, 64, 3072)]
    for log_alpha in cases:
        gate = gate_with(log_alpha).eval()
        expected, kept = reference_eval_mask(log_alpha)
        mask = gate()
        assert int((mask != 0).sum()) == kept == gate.num_kept()
        assert torch.allclose(mask, torch.tensor(expected), rtol=1e-6, atol=1e-7)


def test_eval_mask_keeps_round_expected_l0_where_the_old_rule_kept_fewer():
    # FFN gates during pruning: many units at log_alpha in (-5, -2) still count
    # towards the expected L0 (P(z > 0) = sigmoid(a + 1.6)), while the clamped
    # stretched estimate clamp(sigmoid(a) * 1.2 - 0.1, 0, 1) is 0 below -2.4:
    # a rule keeping only non-zero estimates kept fewer units than expected.
    log_alpha = torch.linspace(-5.0, -2.0, 3072)
    gate = gate_with(log_alpha).eval()
    l0 = gate.expected_num_kept().item()
    kept = int((gate() != 0).sum())
    assert kept == 3072 - round(3072 - l0)
    assert kept > int((log_alpha > math.log(1 / 11)).sum())
    # The kept units are those with the largest log_alpha.
    assert (gate()[-kept:] > 0).all()


def test_initialisation_follows_drop_rate():
    torch.manual_seed(0)
    for drop_rate in (0.01, 0.5):
        gate = HardConcreteGate(4000, init_drop_rate=drop_rate)
        mean = math.log((1 - drop_rate) / drop_rate)
        assert abs(gate.log_alpha.mean().item() - mean) < 1e-3
        assert abs(gate.log_alpha.std().item() - 0.01) < 1e-3


def test_student_gate_init_and_groups():
    config = tiny_student_config(
        prune_conv=True,
        prune_heads=True,
        prune_attention_layer=True,
        prune_ffn_units=True,
        prune_ffn_layer=True,
    )
    student = PrunableSSLEncoder(config)
    gates = student.named_gates()
    # 7 conv + per layer: heads, attention block, ffn units, ffn block.
    assert len(gates) == 7 + 2 * 4
    for name, gate in gates.items():
        expected_rate = 0.5 if name.endswith("unit_gate") else 0.01
        assert gate.init_drop_rate == expected_rate, name
    gate_ids = {id(p) for p in student.gate_parameters()}
    main_ids = {id(p) for p in student.main_parameters()}
    assert not gate_ids & main_ids
    assert len(gate_ids) + len(main_ids) == len(list(student.parameters()))


def test_all_parameters_get_gradients_in_training():
    config = tiny_student_config(
        prune_conv=True,
        prune_heads=True,
        prune_attention_layer=True,
        prune_ffn_units=True,
        prune_ffn_layer=True,
    )
    torch.manual_seed(0)
    student = PrunableSSLEncoder(config).train()
    hidden, _ = student(torch.randn(2, 8000), torch.tensor([1.0, 0.7]))
    loss = hidden.pow(2).mean() + student.expected_sparsity().float()
    loss.backward()
    missing = [n for n, p in student.named_parameters() if p.grad is None]
    assert not missing
