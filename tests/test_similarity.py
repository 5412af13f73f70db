"""Layer similarity: CKA properties, streaming vs in-memory, padding, determinism."""

import logging

import numpy as np
import pytest
import torch
from speechbrain.dataio.batch import PaddedBatch

from speechbrain_skill.layer_groups.accumulators import (
    CosineAccumulator,
    LinearCKAAccumulator,
    MinibatchCKAAccumulator,
    accumulator_memory_bytes,
    make_accumulator,
    select_frames,
)
from speechbrain_skill.layer_groups.cka import linear_cka, unbiased_hsic
from speechbrain_skill.layer_groups.similarity import compute_layer_similarity


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).double()


def related_pair(n=300, d=12, seed=0):
    """Two representations that share part of their structure."""
    x = randn(n, d, seed=seed)
    y = x @ randn(d, 9, seed=seed + 1) + 0.8 * randn(n, 9, seed=seed + 2)
    return x, y


def random_rotation(d, seed):
    q, _ = torch.linalg.qr(randn(d, d, seed=seed))
    return q


def naive_unbiased_hsic(x, y):
    """Song et al. (2012) estimator written with explicit Gram matrices."""
    x, y = np.asarray(x), np.asarray(y)
    n = x.shape[0]
    k, l_ = x @ x.T, y @ y.T
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l_, 0)
    one = np.ones(n)
    return (
        np.trace(k @ l_)
        + (one @ k @ one) * (one @ l_ @ one) / ((n - 1) * (n - 2))
        - 2 / (n - 2) * (one @ k @ l_ @ one)
    ) / (n * (n - 3))


def naive_biased_cka(x, y):
    """CKA through centred Gram matrices (the kernel form, not feature space)."""
    x, y = np.asarray(x), np.asarray(y)
    n = x.shape[0]
    h = np.eye(n) - 1.0 / n
    k, l_ = h @ x @ x.T @ h, h @ y @ y.T @ h
    return np.sum(k * l_) / (np.linalg.norm(k) * np.linalg.norm(l_))


def layered_hidden(states=4, batch=3, time=20, dim=6, seed=0):
    """Hidden states whose layers drift away from each other, like a deep model."""
    base = randn(batch, time, dim, seed=seed)
    layers = [base]
    for index in range(1, states):
        mix = randn(dim, dim, seed=seed + index)
        layers.append(torch.tanh(layers[-1] @ mix) + 0.3 * randn(batch, time, dim))
    return torch.stack(layers)


@pytest.mark.parametrize("unbiased", [False, True])
def test_cka_with_itself_is_one(unbiased):
    x, _ = related_pair()
    assert linear_cka(x, x, unbiased=unbiased) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("unbiased", [False, True])
def test_invariant_to_rotation_and_isotropic_scaling(unbiased):
    x, y = related_pair()
    reference = linear_cka(x, y, unbiased=unbiased)
    assert 0.2 < reference < 0.99
    rotated_x = 3.7 * x @ random_rotation(x.shape[1], seed=10)
    rotated_y = 0.05 * y @ random_rotation(y.shape[1], seed=11)
    assert linear_cka(rotated_x, y, unbiased=unbiased) == pytest.approx(reference)
    assert linear_cka(x, rotated_y, unbiased=unbiased) == pytest.approx(reference)
    assert linear_cka(rotated_x, rotated_y, unbiased=unbiased) == pytest.approx(
        reference
    )


def test_not_invariant_to_anisotropic_scaling():
    """A sanity check that the invariance test above can fail."""
    x, y = related_pair()
    stretched = x * torch.linspace(0.1, 5.0, x.shape[1])
    assert abs(linear_cka(stretched, y) - linear_cka(x, y)) > 1e-3


@pytest.mark.parametrize("unbiased", [False, True])
def test_symmetric(unbiased):
    x, y = related_pair()
    assert linear_cka(x, y, unbiased=unbiased) == pytest.approx(
        linear_cka(y, x, unbiased=unbiased), abs=1e-12
    )


def test_feature_space_cka_equals_kernel_form():
    x, y = related_pair(n=80)
    assert linear_cka(x, y) == pytest.approx(naive_biased_cka(x, y), abs=1e-10)


def test_unbiased_hsic_equals_gram_form():
    x, y = related_pair(n=40)
    assert unbiased_hsic(x, y) == pytest.approx(naive_unbiased_hsic(x, y), rel=1e-9)


def test_unbiased_near_zero_for_independent_features_biased_not():
    x, y = randn(100, 50, seed=1), randn(100, 50, seed=2)
    assert abs(linear_cka(x, y, unbiased=True)) < 0.05
    assert linear_cka(x, y) > 0.3
    many = torch.stack([randn(1000, 50, seed=3), randn(1000, 50, seed=4)])
    minibatch = MinibatchCKAAccumulator(minibatch_size=200)
    minibatch.update(many)
    assert abs(minibatch.compute()[0, 1]) < 0.02
    biased = LinearCKAAccumulator()
    biased.update(many[:, :200])
    assert biased.compute()[0, 1] > 0.1  # same frames per estimate, biased


def test_streaming_equals_in_memory_on_the_same_frames():
    hidden = layered_hidden(states=4, batch=5, time=30, dim=6)
    hidden = hidden + 100.0  # a large mean: the streaming centring must cope
    frame_lens = torch.tensor([30, 17, 9, 1, 22])
    accumulator = LinearCKAAccumulator(chunk_frames=7, product_dtype=torch.float64)
    accumulator.update(select_frames(hidden[:, :2], frame_lens[:2]))
    accumulator.update(select_frames(hidden[:, 2:], frame_lens[2:]))
    streamed = accumulator.compute()

    frames = torch.cat([hidden[:, b, : frame_lens[b]] for b in range(5)], dim=1)
    assert accumulator.num_frames == frames.shape[1] == 79
    direct = np.array([[linear_cka(a, b) for b in frames] for a in frames])
    np.testing.assert_allclose(streamed, direct, atol=1e-10)
    assert np.allclose(streamed, streamed.T)
    assert np.all(direct[0, 1:] < 0.999)  # the layers do differ


def test_float32_products_are_close_to_float64():
    frames = layered_hidden(states=3, batch=2, time=200, dim=16).flatten(1, 2)
    exact, fast = (
        LinearCKAAccumulator(),
        LinearCKAAccumulator(product_dtype=torch.float32),
    )
    exact.update(frames)
    fast.update(frames.float())
    np.testing.assert_allclose(fast.compute(), exact.compute(), atol=1e-5)


def test_minibatch_cka_is_the_ratio_of_mean_unbiased_hsic():
    frames = layered_hidden(states=3, batch=1, time=90, dim=5)[:, 0]
    generator = torch.Generator().manual_seed(7)
    accumulator = MinibatchCKAAccumulator(
        minibatch_size=30, generator=generator, product_dtype=torch.float64
    )
    order = torch.randperm(90, generator=torch.Generator().manual_seed(7))
    accumulator.update(frames)
    shuffled = frames[:, order].numpy()
    chunks = [shuffled[:, i : i + 30] for i in range(0, 90, 30)]
    hsic = np.array(
        [
            [
                np.mean([naive_unbiased_hsic(c[i], c[j]) for c in chunks])
                for j in range(3)
            ]
            for i in range(3)
        ]
    )
    expected = hsic / np.sqrt(np.outer(np.diag(hsic), np.diag(hsic)))
    np.testing.assert_allclose(accumulator.compute(), expected, rtol=1e-9)
    assert accumulator.num_minibatches == 3


def test_minibatch_tail_rule():
    frames = randn(2, 110, 4)
    accumulator = MinibatchCKAAccumulator(minibatch_size=50)
    accumulator.update(frames)
    accumulator.compute()
    assert accumulator.dropped_frames == 10  # 10 < 50 / 2: too noisy, dropped
    small = MinibatchCKAAccumulator(minibatch_size=50)
    small.update(frames[:, :20])  # the only minibatch: used
    assert small.compute()[0, 0] == pytest.approx(1.0)
    tiny = MinibatchCKAAccumulator(minibatch_size=50)
    tiny.update(frames[:, :3])
    with pytest.raises(ValueError, match="at least 4"):
        tiny.compute()


def test_cosine_matches_torch():
    frames = layered_hidden(states=3, batch=2, time=10, dim=4).flatten(1, 2)
    accumulator = CosineAccumulator()
    accumulator.update(frames[:, :7])
    accumulator.update(frames[:, 7:])
    expected = [
        [float(torch.cosine_similarity(a, b, dim=1).mean()) for b in frames]
        for a in frames
    ]
    np.testing.assert_allclose(accumulator.compute(), expected, atol=1e-12)


@pytest.mark.parametrize("measure", ["cka", "cka_minibatch", "cosine"])
def test_padding_frames_do_not_change_the_result(measure):
    hidden = layered_hidden(states=3, batch=3, time=40, dim=5)
    frame_lens = torch.tensor([40, 25, 12])
    garbage = hidden.clone()
    for index, length in enumerate(frame_lens.tolist()):
        garbage[:, index, length:] = 1e3 * randn(3, 40 - length, 5, seed=index)
    results = []
    for values in (hidden, garbage):
        options = {"minibatch_size": 16} if measure == "cka_minibatch" else {}
        accumulator = make_accumulator(measure, **options)
        accumulator.update(select_frames(values, frame_lens))
        results.append(accumulator.compute())
    np.testing.assert_allclose(results[0], results[1], atol=1e-12)


class FakeTeacher:
    """Returns fixed hidden states with garbage in the padding frames."""

    num_hidden_states = 3

    def __init__(self, hidden, garbage):
        self.hidden, self.garbage = hidden, garbage

    def __call__(self, wavs, wav_lens):
        frame_lens = torch.round(wav_lens * self.hidden.shape[2]).long()
        start = int(wavs[0, 0])  # the batch says which utterances it holds
        hidden = self.hidden[:, start : start + wavs.shape[0]].clone()
        if self.garbage:
            for index, length in enumerate(frame_lens.tolist()):
                hidden[:, index, length:] = 1e4
        return hidden, frame_lens


def test_compute_layer_similarity_excludes_padding_frames():
    hidden = layered_hidden(states=3, batch=4, time=20, dim=5)
    lens = torch.tensor([1.0, 0.5, 0.75, 0.25])
    batches = [
        (torch.full((2, 8), float(start)), lens[start : start + 2]) for start in (0, 2)
    ]
    clean = compute_layer_similarity(
        FakeTeacher(hidden, False), batches, progress=False
    )
    padded = compute_layer_similarity(
        FakeTeacher(hidden, True), batches, progress=False
    )
    np.testing.assert_allclose(clean, padded, atol=1e-12)


def test_tiny_teacher_matrix_is_deterministic_and_well_formed(tiny_wavlm):
    generator = torch.Generator().manual_seed(0)
    wavs = torch.randn(3, 24000, generator=generator)
    wavs[1, 16000:] = 0
    wavs[2, 8000:] = 0
    lens = torch.tensor([1.0, 16000 / 24000, 8000 / 24000])
    examples = [
        {"id": str(i), "sig": wavs[i, : round(float(lens[i]) * 24000)]}
        for i in range(3)
    ]
    batches = [PaddedBatch(examples[:2]), PaddedBatch(examples[2:])]
    options = dict(max_frames_per_utterance=20, progress=False)
    first, stats = compute_layer_similarity(
        tiny_wavlm, batches, return_stats=True, **options
    )
    second = compute_layer_similarity(tiny_wavlm, batches, **options)
    other_seed = compute_layer_similarity(tiny_wavlm, batches, seed=1, **options)
    assert first.shape == (5, 5)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other_seed)
    np.testing.assert_allclose(first, first.T)
    np.testing.assert_allclose(np.diag(first), 1.0, atol=1e-9)
    assert np.all(first <= 1 + 1e-9) and np.all(first > 0)
    assert stats.num_utterances == 3
    assert stats.num_frames == 74 + 49 + 24
    assert stats.num_frames_used == 20 * 3


def test_frame_subsampling_is_seeded_and_keeps_order():
    hidden = torch.arange(30.0).view(1, 1, 30, 1)
    pick = [
        select_frames(hidden, None, 5, torch.Generator().manual_seed(s)).flatten()
        for s in (0, 0, 1)
    ]
    assert torch.equal(pick[0], pick[1]) and not torch.equal(pick[0], pick[2])
    assert torch.equal(pick[0], pick[0].sort().values)


def test_constant_layer_gives_nan_with_warning(caplog):
    frames = randn(3, 50, 4)
    frames[1] = 2.0
    accumulator = LinearCKAAccumulator()
    accumulator.update(frames)
    matrix = accumulator.compute()
    assert np.isnan(matrix[1]).all() and not np.isnan(matrix[0, 2])

    class ConstantTeacher:
        def __call__(self, wavs, wav_lens):
            return frames[:, None], torch.tensor([50])

    with caplog.at_level(logging.WARNING):
        compute_layer_similarity(ConstantTeacher(), [torch.zeros(1, 5)], progress=False)
    assert "constant" in caplog.text


def test_errors_are_clear():
    with pytest.raises(ValueError, match="Unknown similarity measure 'rbf'"):
        make_accumulator("rbf")
    with pytest.raises(ValueError, match="Bad options"):
        make_accumulator("cosine", minibatch_size=8)
    with pytest.raises(ValueError, match="No frames"):
        compute_layer_similarity(
            FakeTeacher(randn(3, 1, 5, 2), False), [], progress=False
        )
    accumulator = LinearCKAAccumulator()
    accumulator.update(randn(3, 10, 4))
    with pytest.raises(ValueError, match="do not match"):
        accumulator.update(randn(2, 10, 4))
    with pytest.raises(ValueError, match="same frames"):
        linear_cka(randn(10, 3), randn(11, 3))
    with pytest.raises(ValueError, match="max_frames_per_utterance"):
        select_frames(randn(1, 1, 5, 2), None, 0)


def test_memory_bound_for_wavlm_base_plus_shape():
    cross_products = 13 * 14 // 2 * 768 * 768 * 8
    assert cross_products == pytest.approx(429e6, rel=0.01)
    assert accumulator_memory_bytes(13, 768) >= cross_products
    assert accumulator_memory_bytes(13, 768, "cka_minibatch") < cross_products
    small = accumulator_memory_bytes(13, 768, "cka_minibatch", minibatch_size=256)
    assert small < 0.15 * cross_products


def test_teacher_sources_are_wrapped(tiny_wavlm):
    from speechbrain_skill.layer_groups.similarity import as_teacher
    from speechbrain_skill.lobes.hf_ssl import load_hf_ssl_model
    from speechbrain_skill.lobes.teacher import FrozenSSLTeacher

    assert isinstance(as_teacher(tiny_wavlm), FrozenSSLTeacher)
    assert isinstance(as_teacher(load_hf_ssl_model(tiny_wavlm)), FrozenSSLTeacher)
    fake = FakeTeacher(randn(3, 1, 5, 2), False)
    assert as_teacher(fake) is fake
