"""The frozen SSL upstream lobe: weighted layer sum, single layer, sources, DDP."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from student_helpers import tiny_student_config

from speechbrain_skill.lobes.teacher import FrozenSSLTeacher
from speechbrain_skill.lobes.upstream import (
    SSLUpstream,
    WeightedLayerSum,
    is_student_dir,
    load_upstream_model,
)


def _batch():
    generator = torch.Generator().manual_seed(0)
    wavs = 0.1 * torch.randn(2, 16000, generator=generator)
    wav_lens = torch.tensor([1.0, 0.6])
    wavs[1, 9600:] = 0.0
    return wavs, wav_lens


@pytest.fixture(scope="module")
def student_dirs(tiny_wavlm, tiny_hubert, tmp_path_factory):
    """Our student format holding exactly the tiny HF models' weights."""
    from speechbrain_skill.lobes.student import PrunableSSLEncoder, save_student

    root = tmp_path_factory.mktemp("students")
    return {
        "wavlm": save_student(PrunableSSLEncoder.from_hf(tiny_wavlm), root / "wavlm"),
        "hubert": save_student(
            PrunableSSLEncoder.from_hf(tiny_hubert), root / "hubert"
        ),
    }


def test_zero_init_weighted_sum_is_the_mean_and_padding_is_zero(tiny_wavlm):
    upstream = SSLUpstream(tiny_wavlm)
    wavs, wav_lens = _batch()
    feats, feat_lens = upstream(wavs, wav_lens, return_lengths=True)
    hidden, frame_lens = FrozenSSLTeacher(tiny_wavlm)(wavs, wav_lens)
    assert feats.shape == hidden.shape[1:]
    real = frame_lens[1]
    torch.testing.assert_close(feats[0], hidden[:, 0].mean(0))
    torch.testing.assert_close(feats[1, :real], hidden[:, 1, :real].mean(0))
    assert feats[1, real:].abs().max() == 0
    assert feat_lens.tolist() == (frame_lens / feats.shape[1]).tolist()
    weights = upstream.layer_weights()
    torch.testing.assert_close(weights, torch.full((5,), 0.2))


def test_single_layer_mode_returns_that_state_and_trains_nothing(tiny_wavlm):
    wavs, wav_lens = _batch()
    hidden, frame_lens = FrozenSSLTeacher(tiny_wavlm)(wavs, wav_lens)
    upstream = SSLUpstream(tiny_wavlm, layer=-1)
    assert upstream.layer == 4
    feats = upstream(wavs, wav_lens)
    torch.testing.assert_close(feats[0], hidden[4, 0])
    assert not [p for p in upstream.parameters() if p.requires_grad]
    assert upstream.layer_weights().tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="out of range"):
        SSLUpstream(tiny_wavlm, layer=5)


def test_only_layer_weights_train_and_model_stays_frozen(tiny_hubert):
    upstream = SSLUpstream(tiny_hubert).train()
    trainable = [n for n, p in upstream.named_parameters() if p.requires_grad]
    assert trainable == ["weighting.logits"]
    assert not upstream.model.training
    wavs, wav_lens = _batch()
    upstream(wavs, wav_lens).pow(2).sum().backward()
    assert upstream.weighting.logits.grad.abs().sum() > 0
    assert all(p.grad is None for p in upstream.model.parameters())
    assert upstream.num_params() == sum(p.numel() for p in upstream.model.parameters())


def test_layer_normalised_sum():
    hidden = torch.randn(3, 2, 4, 8) * torch.tensor([1.0, 10.0, 100.0]).view(3, 1, 1, 1)
    out = WeightedLayerSum(3, normalize_layers=True)(hidden)
    expected = torch.nn.functional.layer_norm(hidden, (8,)).mean(0)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("model_type", ["wavlm", "hubert"])
@pytest.mark.parametrize("layer", [None, 2])
def test_student_export_gives_the_same_features_as_the_hf_model(
    model_type, layer, student_dirs, tiny_wavlm, tiny_hubert
):
    hf_dir = {"wavlm": tiny_wavlm, "hubert": tiny_hubert}[model_type]
    student_dir = student_dirs[model_type]
    assert is_student_dir(student_dir) and not is_student_dir(hf_dir)
    from_student = SSLUpstream(student_dir, layer=layer)
    from_hf = SSLUpstream(hf_dir, layer=layer)
    assert from_student.kind == "student" and from_hf.kind == f"hf:{model_type}"
    assert from_student.num_params() == from_hf.num_params()
    wavs, wav_lens = _batch()
    feats_student, lens_student = from_student(wavs, wav_lens, return_lengths=True)
    feats_hf, lens_hf = from_hf(wavs, wav_lens, return_lengths=True)
    torch.testing.assert_close(feats_student, feats_hf, atol=1e-5, rtol=1e-4)
    assert lens_student.tolist() == lens_hf.tolist()


def test_student_and_its_hf_export_give_the_same_features(tmp_path):
    from speechbrain_skill.export.hf_stock import save_hf_stock
    from speechbrain_skill.lobes.student import (
        PrunableSSLEncoder,
        save_student,
    )

    torch.manual_seed(3)
    config = tiny_student_config()
    student = PrunableSSLEncoder(config)
    student_dir = save_student(student, tmp_path / "student")
    hf_dir = save_hf_stock(student, tmp_path / "hf")
    wavs, wav_lens = _batch()
    ours, theirs = SSLUpstream(student_dir), SSLUpstream(hf_dir)
    assert (ours.kind, theirs.kind) == ("student", "hf:wavlm")
    torch.testing.assert_close(
        ours(wavs, wav_lens), theirs(wavs, wav_lens), atol=1e-5, rtol=1e-4
    )


def test_onnx_exports_are_upstreams_with_the_students_features(tmp_path):
    """fp32 ONNX = the PyTorch student; int8 close to it; frozen use only."""
    from speechbrain_skill.export.int8 import quantize_onnx
    from speechbrain_skill.export.onnx import export_onnx
    from speechbrain_skill.lobes.student import PrunableSSLEncoder, save_student
    from speechbrain_skill.lobes.upstream import upstream_key

    torch.manual_seed(4)
    student = PrunableSSLEncoder(tiny_student_config())
    student_dir = save_student(student, tmp_path / "student")
    (tmp_path / "onnx").mkdir()
    fp32 = export_onnx(student, tmp_path / "onnx" / "student.onnx")
    int8 = tmp_path / "onnx_int8" / "student.onnx"
    int8.parent.mkdir()
    quantize_onnx(fp32, int8)
    wavs, wav_lens = _batch()
    reference = SSLUpstream(student_dir, layer=-1)
    graph = SSLUpstream(fp32, layer=-1)
    assert graph.kind == "onnx"
    assert graph.num_hidden_states == reference.num_hidden_states
    # the graph's weights: the pruning gates and the positional conv's weight
    # norm factors are not in it (the conv weight is folded)
    assert abs(graph.num_params() / reference.num_params() - 1) < 0.02
    feats, lens = graph(wavs, wav_lens, return_lengths=True)
    expected, expected_lens = reference(wavs, wav_lens, return_lengths=True)
    torch.testing.assert_close(feats, expected, atol=1e-4, rtol=1e-4)
    assert lens.tolist() == expected_lens.tolist()
    quantized = SSLUpstream(int8, layer=-1)(wavs, wav_lens)
    valid = expected.abs().sum(-1) > 0
    cosine = torch.nn.functional.cosine_similarity(
        quantized[valid], expected[valid], dim=-1
    )
    assert not torch.equal(quantized, expected) and cosine.min() > 0.98
    assert upstream_key(fp32, None) != upstream_key(int8, None)
    assert upstream_key(fp32, None).startswith("onnx-student-")
    with pytest.raises(ValueError, match="frozen"):
        SSLUpstream(fp32, freeze=False)
    from speechbrain_skill.lobes.hf_ssl import TeacherLoadError

    with pytest.raises(TeacherLoadError, match="No ONNX graph at .*missing.onnx"):
        SSLUpstream(tmp_path / "missing.onnx")
    # dataloader workers and DDP pickle modules: the session is rebuilt, same threads
    import pickle

    copy = pickle.loads(pickle.dumps(graph))
    assert copy.model.threads == graph.model.threads
    torch.testing.assert_close(copy(wavs, wav_lens), feats)


def test_random_sources_have_the_shape_but_not_the_weights(student_dirs, tiny_wavlm):
    wavs, wav_lens = _batch()
    for source in (student_dirs["wavlm"], tiny_wavlm):
        trained = SSLUpstream(source)
        random_a = SSLUpstream(f"random:{source}", seed=1)
        random_b = SSLUpstream(f"random:{source}", seed=1)
        assert random_a.kind.startswith("random-")
        assert random_a.num_params() == trained.num_params()
        out_a = random_a(wavs, wav_lens)
        torch.testing.assert_close(out_a, random_b(wavs, wav_lens))
        assert not torch.allclose(out_a, trained(wavs, wav_lens))
    assert load_upstream_model(f"random:{tiny_wavlm}")[1] == "random-hf:wavlm"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank, world_size, port, source, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(rank)
        upstream = SSLUpstream(source)
        wrapped = torch.nn.parallel.DistributedDataParallel(
            upstream, find_unused_parameters=False
        )
        wavs = 0.1 * torch.randn(2, 8000)
        for _ in range(2):  # a second step fails if a parameter went unused
            wrapped(wavs, torch.tensor([1.0, 0.7])).pow(2).mean().backward()
        grad = wrapped.module.weighting.logits.grad
        torch.save(grad, os.path.join(out_dir, f"grad{rank}.pt"))
        # Without it, a rank that leaves while the other still communicates can
        # abort at teardown (measured: 6 of 20 spawns; 0 of 20 with it).
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


def test_ddp_wraps_only_the_layer_weights_without_unused_parameters(
    student_dirs, tmp_path
):
    # A student directory: the spawned workers need not import transformers.
    mp.spawn(
        _ddp_worker,
        args=(2, _free_port(), student_dirs["wavlm"], str(tmp_path)),
        nprocs=2,
        join=True,
    )
    grads = [torch.load(tmp_path / f"grad{rank}.pt") for rank in range(2)]
    torch.testing.assert_close(grads[0], grads[1])
    assert grads[0].abs().sum() > 0
