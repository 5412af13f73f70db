"""What a GPU run needs, tested on CPU (issue 26).

Dtype flows use :class:`cuda_autocast.EmulatedCudaAutocast` (CUDA autocast's
op lists on CPU): targets and losses stay fp32, gated activations stay in
the autocast dtype. The GradScaler rule is tested with a CPU GradScaler and
an injected inf gradient.
"""

import contextlib
from types import SimpleNamespace

import pytest
import speechbrain as sb
import torch
from cuda_autocast import EmulatedCudaAutocast
from student_helpers import tiny_student_config

from speechbrain_skill.data.dataio import AudioBatch
from speechbrain_skill.distillation.brains import PruningDistillationBrain
from speechbrain_skill.distillation.lagrangian import SparsityLagrangian
from speechbrain_skill.distillation.losses import DistillationLoss
from speechbrain_skill.lobes.heads import LayerProjections
from speechbrain_skill.lobes.student import PrunableSSLEncoder
from speechbrain_skill.lobes.teacher import FrozenSSLTeacher

HALF = [torch.float16, torch.bfloat16]
# Where an fp32 tensor may meet a half one (CUDA does the same): the residual
# stream (LayerNorm outputs are fp32) and the channel scale before the
# projection LayerNorm.
ALLOWED_UPCASTS = {
    "encoder.py:EncoderLayer.forward",
    "conv.py:FeatureProjection.forward",
}


def test_emulator_follows_cuda_lists():
    x, w = torch.randn(3, 4), torch.randn(5, 4)
    with EmulatedCudaAutocast(torch.float16) as mode:
        y = torch.nn.functional.linear(x, w)
        assert y.dtype == torch.float16
        assert torch.nn.functional.layer_norm(y, (5,)).dtype == torch.float32
        assert y.sum().dtype == torch.float32
        assert torch.softmax(y, -1).dtype == torch.float32
        assert torch.cat([y, x @ w.T.float()]).dtype == torch.float16
        assert torch.cat([y, torch.randn(3, 5)]).dtype == torch.float32
        assert (y * torch.ones(5)).dtype == torch.float32
        assert torch.nn.functional.gelu(y).dtype == torch.float16
        assert x.double().matmul(w.double().T).dtype == torch.float64
    assert sum(mode.upcasts.values()) == 1
    assert mode.lower_calls[0] == ("linear", torch.float32, torch.float16)


def all_gates_student(model_type, close_half=False):
    config = tiny_student_config(
        model_type,
        prune_conv=True,
        prune_heads=True,
        prune_ffn_units=True,
        prune_attention_layer=True,
        prune_ffn_layer=True,
        ffn_unit_gate_init_drop_rate=0.01,
    )
    student = PrunableSSLEncoder(config).train()
    if close_half:  # exact zeros: the unit-skipping path
        with torch.no_grad():
            for gate in student.named_gates().values():
                if gate.num_units > 1:
                    gate.log_alpha[: gate.num_units // 2] = -100.0
    return student


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("model_type", ["hubert", "wavlm"])
@pytest.mark.parametrize("close_half", [False, True])
def test_gated_activations_stay_in_the_autocast_dtype(dtype, model_type, close_half):
    torch.manual_seed(0)
    student = all_gates_student(model_type, close_half)
    ffn_inputs = []
    for layer in student.encoder.layers:
        layer.feed_forward.output_dense.register_forward_pre_hook(
            lambda module, args: ffn_inputs.append(args[0].dtype)
        )
    wavs, wav_lens = torch.randn(2, 8000), torch.tensor([1.0, 0.7])
    with EmulatedCudaAutocast(dtype) as mode:
        features = student.feature_extractor(wavs)
        hidden, _ = student(wavs, wav_lens)
    # Every gated conv output, the last one included, in the autocast dtype.
    assert features.dtype == dtype
    assert set(mode.upcasts) <= ALLOWED_UPCASTS, mode.upcasts
    assert all(d == dtype for d in ffn_inputs)
    # Hidden states are LayerNorm outputs: fp32, as on CUDA.
    assert hidden.dtype == torch.float32


def batch(seconds=0.5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    samples = int(16000 * seconds)
    return AudioBatch(
        [
            {"id": "a", "sig": 0.1 * torch.randn(samples, generator=generator)},
            {"id": "b", "sig": 0.1 * torch.randn(samples // 2, generator=generator)},
        ]
    )


def pruning_brain(teacher_path, max_grad_norm=10.0, **run_opts):
    torch.manual_seed(0)
    hparams = dict(
        distill_loss=DistillationLoss(),
        gate_opt_class=lambda p: torch.optim.AdamW(p, lr=0.02, weight_decay=0.0),
        lambda_opt_class=lambda p: torch.optim.AdamW(
            p, lr=0.02, weight_decay=0.0, maximize=True
        ),
        lr_annealing=None,
        log_interval=10**6,
    )
    modules = {
        "teacher": FrozenSSLTeacher(teacher_path),
        "student": PrunableSSLEncoder.from_hf(
            teacher_path, prune_heads=True, prune_ffn_units=True
        ).train(),
        "heads": LayerProjections([0, 2, 4], 32),
        "lagrangian": SparsityLagrangian(0.5, 5),
    }
    return PruningDistillationBrain(
        [[0], [2], [4]],
        modules=modules,
        opt_class=lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.0),
        hparams=hparams,
        run_opts={"max_grad_norm": max_grad_norm, **run_opts},
    )


@pytest.mark.parametrize("dtype", HALF)
def test_targets_and_losses_stay_fp32(tiny_hubert, dtype):
    brain = pruning_brain(tiny_hubert)
    with EmulatedCudaAutocast(dtype):
        outputs = brain.compute_forward(batch(), sb.Stage.TRAIN)
        loss = brain.compute_objectives(outputs, batch(), sb.Stage.TRAIN)
    targets = outputs["targets"]
    assert outputs["predictions"].dtype == dtype  # the heads are Linear layers
    assert targets.dtype == torch.float32
    # The targets keep fp32 precision: rounding them to the autocast dtype
    # changes most of them (it changed none before: they were rounded).
    rounded = targets.to(dtype).float()
    assert (rounded != targets).float().mean() > 0.5
    assert loss.dtype in (torch.float32, torch.float64)  # + the fp64 Lagrangian
    # The reported fit is that of the fp32 targets (to fp32 summation order).
    pred = outputs["predictions"].double()
    l1 = (pred[0] - targets[0].double())[outputs["mask"]].abs().mean()
    assert float(brain.last_parts["l1_0"]) == pytest.approx(float(l1), rel=1e-5)


def param_snapshot(brain):
    return {
        name: [p.detach().clone() for g in opt.param_groups for p in g["params"]]
        for name, opt in brain.optimizers_dict.items()
    }


def adam_steps(brain):
    counts = []
    for opt in brain.optimizers_dict.values():
        states = [opt.state[p] for g in opt.param_groups for p in g["params"]]
        counts.append(sorted({int(s.get("step", 0)) for s in states}))
    return counts


def test_scaler_skips_every_optimizer_together(tiny_hubert):
    brain = pruning_brain(tiny_hubert)
    brain.on_fit_start()
    brain.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    brain.fit_batch(batch())
    assert adam_steps(brain) == [[1], [1], [1]]
    # An inf in one main weight's gradient only, at the next step.
    weight = brain.student.encoder.layers[0].feed_forward.output_dense.weight
    handle = weight.register_hook(
        lambda grad: grad.index_fill(0, torch.tensor([0]), float("inf"))
    )
    before = param_snapshot(brain)
    brain.fit_batch(batch(seed=1))
    handle.remove()
    after = param_snapshot(brain)
    for name in before:  # weights, gates and multipliers: none moved
        for old, new in zip(before[name], after[name]):
            assert torch.equal(old, new), name
    assert adam_steps(brain) == [[1], [1], [1]]
    assert brain.scaler.get_scale() == 2.0**9
    brain.fit_batch(batch(seed=2))
    assert adam_steps(brain) == [[2], [2], [2]]
    moved = param_snapshot(brain)
    assert all(
        not torch.equal(a, b)
        for name in after
        for a, b in zip(after[name][:1], moved[name][:1])
    )


class MatmulDtypes(torch.overrides.TorchFunctionMode):
    """Record the dtype and size of every matrix product."""

    def __init__(self):
        super().__init__()
        self.dtypes = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if getattr(func, "__name__", "") in ("matmul", "__matmul__", "mm", "bmm"):
            self.dtypes.append((out.dtype, out.numel()))
        return out


def deep_model_frames(states=7, frames=3000, dim=48, seed=0):
    """Frames of layers that drift apart, with a few large-mean channels (as SSL)."""
    generator = torch.Generator().manual_seed(seed)
    layer = torch.randn(frames, dim, generator=generator)
    layers = []
    for _ in range(states):
        mix = torch.randn(dim, dim, generator=generator) / dim**0.5
        noise = torch.randn(frames, dim, generator=generator)
        layer = torch.tanh(layer @ mix) + 0.3 * noise
        shifted = layer.clone()
        shifted[:, :3] += 40.0
        layers.append(shifted)
    return torch.stack(layers)


# Stated tolerance of float32 products with float64 running sums, against
# float64 products: absolute, on CKA values in [0, 1].
CKA_FLOAT32_TOLERANCE = {"cka": 1e-6, "cka_minibatch": 1e-6}  # measured: 9e-9, 6e-10


@pytest.mark.parametrize("measure", ["cka", "cka_minibatch"])
def test_cka_products_are_float32_with_float64_sums(measure):
    from speechbrain_skill.layer_groups.accumulators import make_accumulator

    frames = deep_model_frames()
    options = {"minibatch_size": 500} if measure == "cka_minibatch" else {}
    fast = make_accumulator(measure, **options)
    exact = make_accumulator(measure, product_dtype=torch.float64, **options)
    with MatmulDtypes() as recorded:
        for chunk in frames.split(700, dim=1):
            fast.update(chunk)
        fast_matrix = fast.compute()
    # The dim x dim (cka) / Gram (cka_minibatch) products run in float32
    # (those of states x states outputs, from the sums, may be float64)...
    big = [dtype for dtype, size in recorded.dtypes if size > frames.shape[0] ** 2]
    assert len(big) >= 6 and set(big) == {torch.float32}
    # ... and the sums they feed are float64.
    if measure == "cka":
        assert all(c.dtype == torch.float64 for c in fast._cross.values())
    else:
        assert fast._hsic_sum.dtype == torch.float64
    for chunk in frames.split(700, dim=1):
        exact.update(chunk.double())
    exact_matrix = exact.compute()
    assert 0.05 < exact_matrix.min() < 0.95  # layers do differ
    error = float(abs(fast_matrix - exact_matrix).max())
    assert error < CKA_FLOAT32_TOLERANCE[measure], error


def test_host_syncs_per_training_step(tiny_hubert):
    """SpeechBrain's copy of the loss is the one host sync of a training step.

    The first step also reads its gates' zeros (one sync for all gates);
    later steps use gates drawn at the end of the previous step, whose zeros
    arrived with that step's loss. Before: a ``nonzero`` per gated module, a
    ``float()`` per loss part, the sparsity and the penalty, and
    SpeechBrain's device-side finiteness check (23 on this model).
    """
    from host_syncs import HostSyncCounter

    brain = pruning_brain(tiny_hubert)
    brain.on_fit_start()
    brain.avg_train_loss = 0.0
    counts = []
    for step in (1, 2, 3):
        brain.step = step  # as SpeechBrain's fit loop: fit_batch, update_average
        with HostSyncCounter() as counter:
            loss = brain.fit_batch(batch(seed=step))
            brain.avg_train_loss = brain.update_average(loss, brain.avg_train_loss)
        counts.append(dict(counter.sites))
    first, *later = counts
    assert sum(first.values()) == 2, first
    assert any(site.startswith("active_units.py:GateDraw") for site in first)
    for sites in later:
        assert list(sites.values()) == [1], sites
        assert next(iter(sites)).startswith("core.py:Brain.fit_batch")
    # Logging reads every statistic in one transfer.
    logged = []
    brain.hparams.train_logger = SimpleNamespace(
        log_stats=lambda **kwargs: logged.append(kwargs["train_stats"])
    )
    brain.hparams.log_interval = 1
    brain.step = 4
    with HostSyncCounter() as counter:
        brain.fit_batch(batch(seed=4))
    assert sum(counter.sites.values()) == 2, counter.sites
    assert any("host_floats" in site for site in counter.sites)
    assert {"loss", "l1_0", "expected_sparsity", "lambda1"} <= set(logged[0])
    assert all(isinstance(v, float) for v in logged[0].values())


def test_non_finite_loss_is_still_counted_on_the_host(tiny_hubert):
    brain = pruning_brain(tiny_hubert)
    brain.nonfinite_count = 0
    brain.step = 1
    nan = torch.tensor(float("nan"))
    brain.check_loss_isfinite(nan)  # in fit_batch: deferred, no device read
    assert brain.nonfinite_count == 0
    brain.update_average(nan, 0.0)  # on the loss fit_batch copied to the host
    assert brain.nonfinite_count == 1
    brain.update_average(nan, 0.0)  # validation losses: not counted, as before
    assert brain.nonfinite_count == 1


# Unit roundoff of the autocast dtypes (half the gap between 1 and the next
# number): bf16 keeps 8 significant bits, fp16 11.
UNIT_ROUNDOFF = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}


def precision_run(teacher_path, context, precision="fp32", scaler=False, steps=5):
    """Losses of ``steps`` training steps and the dtypes the targets had."""
    brain = pruning_brain(teacher_path, precision=precision)
    brain.on_fit_start()
    if scaler:
        brain.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    target_dtypes = set()
    objectives = brain.compute_objectives

    def recording(outputs, batch, stage):
        target_dtypes.add(outputs["targets"].dtype)
        return objectives(outputs, batch, stage)

    brain.compute_objectives = recording
    losses = []
    for step in range(1, steps + 1):
        brain.step = step
        with context():
            losses.append(float(brain.fit_batch(batch(seed=step))))
    return losses, target_dtypes


@pytest.mark.parametrize(
    "name, dtype",
    [
        ("cpu_bf16", torch.bfloat16),  # SpeechBrain's --precision=bf16 on CPU
        ("cuda_bf16", torch.bfloat16),  # CUDA's op lists, emulated
        ("cuda_fp16", torch.float16),  # with a GradScaler
    ],
)
def test_mixed_precision_losses_match_fp32(tiny_hubert, name, dtype):
    """Same losses as fp32 within the dtype's tolerance; targets stay fp32.

    Tolerance: the first step (same weights) within 2 unit roundoffs of the
    loss: 0.8% for bf16, 0.1% for fp16. Later steps start from weights that
    already differ, so their gap is a drift, bounded by 8 units (3.1% / 0.4%).
    Measured (tiny HuBERT, 5 steps): CPU bf16 up to 1.2%, emulated CUDA bf16
    0.4%, fp16 0.09% (0.26% at step 5 once the Brain's default hidden state 0
    became ``transformer_input``).
    """
    reference, _ = precision_run(tiny_hubert, contextlib.nullcontext)
    if name == "cpu_bf16":
        losses, dtypes = precision_run(
            tiny_hubert, contextlib.nullcontext, precision="bf16"
        )
    else:
        losses, dtypes = precision_run(
            tiny_hubert,
            lambda: EmulatedCudaAutocast(dtype),
            scaler=dtype == torch.float16,
        )
    assert dtypes == {torch.float32}  # the targets were never cast down
    unit = UNIT_ROUNDOFF[dtype]
    errors = [abs(a - b) / max(1.0, abs(b)) for a, b in zip(losses, reference)]
    assert errors[0] <= 2 * unit, errors
    assert max(errors) <= 8 * unit, errors
    assert losses != reference  # the low precision did run


def test_validation_follows_the_training_precision(tiny_hubert):
    # SpeechBrain's default eval_precision is fp32 whatever --precision says.
    brain = pruning_brain(tiny_hubert, precision="bf16")
    assert brain.eval_precision == "bf16"
    with brain.evaluation_ctx:
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert torch.is_autocast_enabled("cpu")
    given = pruning_brain(tiny_hubert, precision="bf16", eval_precision="fp32")
    assert given.eval_precision == "fp32"


def _shard_worker(rank, world_size, port, results):
    from speechbrain_skill.training.eval_sharding import (
        all_reduce_eval_stats,
        shard_eval_loader_kwargs,
    )

    torch.distributed.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world_size,
    )
    try:
        options = shard_eval_loader_kwargs(list(range(7)), {"batch_size": 2})
        indices = list(options["sampler"])
        # Rank 0: 2 batches of mean loss 1.0; rank 1: 1 batch of loss 4.0.
        own = (1.0, 2, {"mean_l1": 0.5}) if rank == 0 else (4.0, 1, {"mean_l1": 0.7})
        results[rank] = (indices, all_reduce_eval_stats(*own))
    finally:
        torch.distributed.destroy_process_group()


def test_validation_is_shared_between_ddp_processes():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(_shard_worker, args=(2, port, results), nprocs=2, join=True)
    shares = [results[rank][0] for rank in (0, 1)]
    # Every utterance once, on one process; no padding duplicates.
    assert sorted(shares[0] + shares[1]) == list(range(7))
    assert not set(shares[0]) & set(shares[1])
    for rank in (0, 1):  # both see the whole-set figures
        loss, batches, sums = results[rank][1]
        assert batches == 3 and loss == pytest.approx((1.0 * 2 + 4.0) / 3)
        assert sums == {"mean_l1": pytest.approx(1.2)}


def test_brain_validation_loader_takes_the_process_share(tiny_hubert, monkeypatch):
    brain = pruning_brain(tiny_hubert)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda *a: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda *a: 2)
    dataset = list(range(5))
    loader = brain.make_dataloader(dataset, sb.Stage.VALID, None, batch_size=1)
    assert [int(x) for x in loader] == [1, 3]
    train = brain.make_dataloader(dataset, sb.Stage.TRAIN, None, batch_size=1)
    assert len(list(train)) == 5


def test_corruption_runs_in_the_loader_workers(tmp_path):
    """Each utterance corrupted alone in a worker process; padding untouched."""
    import os

    from speechbrain.dataio.dataloader import make_dataloader
    from speechbrain.dataio.dataset import DynamicItemDataset

    from speechbrain_skill.data.corruption import (
        SpeechCorruption,
        add_corrupted_copy,
        snr_db,
    )
    from speechbrain_skill.data.dataio import SkipBadAudioCollate

    generator = torch.Generator().manual_seed(0)
    lengths = [8000, 5000, 3000, 6000]
    data = DynamicItemDataset(
        {
            f"u{i}": {"sig": 0.1 * torch.randn(n, generator=generator)}
            for i, n in enumerate(lengths)
        }
    )
    data.set_output_keys(["id", "sig"])
    pids = []

    class Recording(SpeechCorruption):
        def forward(self, wavs, wav_lens=None):
            pids.append(os.getpid())  # in the worker: not seen by this process
            assert wavs.shape[0] == 1  # one unpadded utterance
            return super().forward(wavs, wav_lens)

    corruption = Recording(corruptions=["noise"], snr_low=5.0, snr_high=5.0)
    assert add_corrupted_copy(data, corruption)
    loader = make_dataloader(
        data, batch_size=4, num_workers=1, collate_fn=SkipBadAudioCollate()
    )
    batch = next(iter(loader))
    assert pids == []  # the main process corrupted nothing
    clean, noisy = batch.sig.data, batch.noisy_sig.data
    assert noisy.shape == clean.shape
    assert torch.equal(batch.noisy_sig.lengths, batch.sig.lengths)
    for row, length in enumerate(lengths):
        assert torch.all(noisy[row, length:] == 0)  # padding stays padding
        snr = float(snr_db(clean[row, :length], noisy[row, :length]))
        assert snr == pytest.approx(5.0, abs=1e-3)


def test_brain_trains_the_student_on_the_workers_copy(tiny_hubert):
    brain = pruning_brain(tiny_hubert)

    def must_not_run(wavs, wav_lens):
        raise AssertionError("corrupted again in the training step")

    brain.hparams.student_input_transform = must_not_run
    heard = []
    student_forward = brain.modules.student.forward

    def listening(wavs, *args, **kwargs):
        heard.append(wavs)
        return student_forward(wavs, *args, **kwargs)

    brain.modules.student.forward = listening
    clean = 0.1 * torch.randn(8000)
    noisy = clean + 0.05 * torch.randn(8000)
    batch = AudioBatch([{"id": "a", "sig": clean, "noisy_sig": noisy}])
    brain.compute_forward(batch, sb.Stage.TRAIN)
    assert torch.equal(heard[-1][0], noisy)
    brain.compute_forward(batch, sb.Stage.VALID)  # validation: clean speech
    assert torch.equal(heard[-1][0], clean)


def test_gates_drawn_ahead_are_the_ones_trained(tiny_hubert, monkeypatch):
    from speechbrain_skill.lobes.student.hard_concrete import HardConcreteGate

    brain = pruning_brain(tiny_hubert)
    brain.on_fit_start()
    brain.step = 1
    brain.fit_batch(batch(seed=1))
    drawn = brain.student.next_draw
    assert drawn is not None and len(drawn.gates) == len(brain.student.named_gates())
    samples = []
    sample = HardConcreteGate.sample
    monkeypatch.setattr(
        HardConcreteGate,
        "sample",
        lambda gate, *a, **k: samples.append(gate) or sample(gate, *a, **k),
    )
    used = {}  # the gate values in force during the student's encoder pass
    brain.student.encoder.register_forward_pre_hook(
        lambda module, args: used.update({g: g.planned[0] for g in drawn.gates})
    )
    before = [p.detach().clone() for p in brain.student.gate_parameters()]
    brain.step = 2
    brain.fit_batch(batch(seed=2))
    # The forward pass used the draw; the next draw came after the step.
    assert all(used[g] is v for g, v in zip(drawn.gates, drawn.values))
    assert len(samples) == len(drawn.gates)
    assert brain.student.next_draw is not drawn
    # The gates learned through the drawn samples (Adam's second step).
    assert adam_steps(brain)[1] == [2]
    after = list(brain.student.gate_parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before))
    import copy

    assert copy.deepcopy(brain.student).next_draw is None  # e.g. the model card
    brain.student.eval()  # leaving training drops the draw
    assert brain.student.next_draw is None


def test_a_process_with_only_unusable_validation_audio_still_joins_ddp(
    tiny_hubert,
):
    """Its one silent forward pairs the buffer broadcast of DDP's first eval pass."""
    from speechbrain_skill.data.dataio import SkippedBatch

    brain = pruning_brain(tiny_hubert)
    brain.hparams.train_logger = SimpleNamespace(log_stats=lambda **kwargs: None)
    brain.on_stage_start(sb.Stage.VALID)
    brain.evaluate_batch(SkippedBatch([("a", "missing")]), sb.Stage.VALID)
    assert brain.eval_forwards == 0
    brain.distributed_launch = True  # this process's share was all unusable
    brain.on_stage_end(sb.Stage.VALID, 0.0)
    assert brain.eval_forwards == 1
    brain.on_stage_start(sb.Stage.VALID)  # a share with usable audio: no extra
    brain.evaluate_batch(batch(), sb.Stage.VALID)
    brain.on_stage_end(sb.Stage.VALID, 0.0)
    assert brain.eval_forwards == 1


def test_fp16_adds_one_host_sync_the_skip_decision(tiny_hubert):
    from host_syncs import HostSyncCounter

    brain = pruning_brain(tiny_hubert)
    brain.on_fit_start()
    brain.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    brain.avg_train_loss = 0.0
    for step in (1, 2):
        brain.step = step
        with HostSyncCounter() as counter:
            loss = brain.fit_batch(batch(seed=step))
            brain.avg_train_loss = brain.update_average(loss, brain.avg_train_loss)
    # Step 2: SpeechBrain's loss copy and one decision for all three optimizers.
    assert sum(counter.sites.values()) == 2, counter.sites
    assert any(
        site.startswith("mixed_precision.py:step_together") for site in counter.sites
    )


def test_fused_optimizers_skip_together_on_the_device(tiny_hubert):
    """AdamW(fused=True) everywhere: the same rule, decided without a host sync."""
    from host_syncs import HostSyncCounter

    brain = pruning_brain(tiny_hubert)
    fused = dict(lr=0.02, weight_decay=0.0, fused=True)
    brain.opt_class = lambda p: torch.optim.AdamW(p, **{**fused, "lr": 1e-3})
    brain.hparams.gate_opt_class = lambda p: torch.optim.AdamW(p, **fused)
    brain.hparams.lambda_opt_class = lambda p: torch.optim.AdamW(
        p, maximize=True, **fused
    )
    brain.on_fit_start()
    brain.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    brain.step = 1
    brain.fit_batch(batch())
    weight = brain.student.encoder.layers[0].feed_forward.output_dense.weight
    handle = weight.register_hook(
        lambda grad: grad.index_fill(0, torch.tensor([0]), float("inf"))
    )
    before = param_snapshot(brain)
    brain.step = 2
    with HostSyncCounter() as counter:
        brain.fit_batch(batch(seed=1))
    handle.remove()
    after = param_snapshot(brain)
    for name in before:
        for old, new in zip(before[name], after[name]):
            assert torch.equal(old, new), name
    assert adam_steps(brain) == [[1], [1], [1]]
    assert brain.scaler.get_scale() == 2.0**9
    assert not any("mixed_precision" in site for site in counter.sites)
