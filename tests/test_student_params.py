"""Parameter counts: formula vs real tensors, expected vs exact, WavLM Base+ shape."""

import random

import pytest
import torch

from speechbrain_skill.lobes.student import (
    PrunableSSLEncoder,
    StudentConfig,
    count_params,
    leading_unit_masks,
    num_params,
    student_config_from_hf,
)

ALL_GATES = dict(
    prune_conv=True,
    prune_heads=True,
    prune_attention_layer=True,
    prune_ffn_units=True,
    prune_ffn_layer=True,
)
DPWAVLM_PARAMS = 23_586_325


def tiny(model_type="wavlm", **fields):
    settings = dict(num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    settings.update(fields)
    return StudentConfig.uniform(model_type, 32, 3, 4, 64, 16, **settings)


def random_pruned_config(seed, model_type, pre_ln):
    rng = random.Random(seed)
    config = tiny(
        model_type,
        do_stable_layer_norm=pre_ln,
        feat_extract_norm="layer" if pre_ln else "group",
        conv_bias=pre_ln,
        feat_proj_layer_norm=rng.random() < 0.7,
    )
    heads = [sorted(rng.sample(range(4), rng.randint(0, 4))) for _ in range(3)]
    return config.with_updates(
        conv_channels=[rng.randint(1, 16) for _ in range(7)],
        attention_heads=heads,
        attention_present=[rng.random() < 0.8 for _ in range(3)],
        ffn_dims=[rng.randint(0, 64) for _ in range(3)],
        ffn_present=[rng.random() < 0.8 for _ in range(3)],
    )


@pytest.mark.parametrize("model_type", ["wavlm", "hubert"])
@pytest.mark.parametrize("pre_ln", [False, True])
def test_formula_counts_every_tensor_of_arbitrary_configs(model_type, pre_ln):
    for seed in range(6):
        config = random_pruned_config(seed, model_type, pre_ln)
        model = PrunableSSLEncoder(config)
        assert count_params(config) == num_params(model), config
        # The odd shapes (no heads, no FFN units, absent blocks) still run.
        hidden, _ = model(torch.randn(1, 4000), torch.tensor([0.8]))
        assert torch.isfinite(hidden).all()


def set_deterministic_gates(student, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in student.gate_parameters():
            signs = torch.randint(0, 2, param.shape, generator=generator) * 2 - 1
            param.copy_(1000.0 * signs)
        # Conv layers must keep at least one channel.
        for layer in student.feature_extractor.conv_layers:
            layer.channel_gate.log_alpha[0] = 1000.0


@pytest.mark.parametrize("model_type", ["wavlm", "hubert"])
@pytest.mark.parametrize("pre_ln", [False, True])
def test_expected_count_equals_exact_count_for_deterministic_gates(model_type, pre_ln):
    config = tiny(model_type, do_stable_layer_norm=pre_ln, **ALL_GATES)
    for seed in range(4):
        student = PrunableSSLEncoder(config).eval()
        set_deterministic_gates(student, seed)
        expected = student.expected_num_params().item()
        exact = student.num_params_for_masks()
        assert expected == exact
        assert num_params(student.prune()) == exact
        sparsity = student.expected_sparsity().item()
        assert sparsity == pytest.approx(1 - exact / num_params(student))


def test_expected_count_is_differentiable_in_every_gate():
    student = PrunableSSLEncoder(tiny(**ALL_GATES))
    student.expected_sparsity().backward()
    for param in student.gate_parameters():
        assert param.grad is not None and (param.grad != 0).any()


def test_expected_count_between_zero_and_unpruned():
    student = PrunableSSLEncoder(tiny(**ALL_GATES))
    unpruned = student.config.unpruned_num_params
    assert unpruned == num_params(student)
    assert 0 < student.expected_num_params().item() < unpruned


def base_plus_student():
    from transformers import WavLMConfig

    config = student_config_from_hf(WavLMConfig(), prune_conv=True, prune_heads=True)
    with torch.device("meta"):
        return PrunableSSLEncoder(config)


def test_base_plus_unpruned_count_matches_hugging_face():
    from transformers import WavLMConfig, WavLMModel

    with torch.device("meta"):
        hf_model = WavLMModel(WavLMConfig())
    # masked_spec_embed is the SpecAugment vector of pre-training: not in the student.
    hf_count = sum(
        p.numel() for n, p in hf_model.named_parameters() if "masked_spec" not in n
    )
    student = base_plus_student()
    assert student.config.unpruned_num_params == num_params(student) == hf_count
    assert hf_count == 94_381_168


def test_base_plus_student_at_075_sparsity_has_about_23_6m_params():
    """Conv halved, 5 of 12 heads, FFN width solved for 0.75 sparsity."""
    student = base_plus_student()
    unpruned = student.config.unpruned_num_params
    best = None
    for ffn in range(0, 3073):
        masks = leading_unit_masks(
            student.config, conv_channels=256, num_heads=5, ffn_dims=ffn
        )
        count = student.num_params_for_masks(masks)
        if best is None or abs(count - 0.25 * unpruned) < abs(
            best[1] - 0.25 * unpruned
        ):
            best = (ffn, count)
        if count > 0.25 * unpruned:
            break
    ffn, count = best
    assert 1 - count / unpruned == pytest.approx(0.75, abs=1e-4)
    assert count == pytest.approx(DPWAVLM_PARAMS, rel=0.005)
    pruned = student.prune(
        leading_unit_masks(student.config, conv_channels=256, num_heads=5, ffn_dims=ffn)
    )
    assert num_params(pruned) == count
    assert pruned.config.ffn_dims == [ffn] * 12
