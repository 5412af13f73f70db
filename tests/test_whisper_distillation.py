"""Whisper distillation pieces: CTranslate2 conversion, packed targets, the Brain."""

import numpy as np
import pytest
import torch

from speechbrain_skill.pretraining.collate import frame_hop
from speechbrain_skill.pretraining.whisper_ct2 import (
    ct2_to_whisper_encoder,
    load_ct2_bytes,
    random_ct2_whisper_encoder,
    read_ct2_model,
    write_ct2_model,
)
from speechbrain_skill.pretraining.whisper_targets import (
    FrameTargets,
    compute_whisper_targets,
    pack_windows,
    whisper_hidden_states,
)


def _gelu(x):
    return 0.5 * x * (1 + torch.erf(x / np.sqrt(2)))


def _layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * gamma + beta


def reference_whisper_encoder(t, mels):
    """Whisper's encoder written from the CTranslate2 tensors (fused q/k/v)."""

    def p(name):
        return torch.from_numpy(np.asarray(t[name], dtype=np.float32))

    x = torch.nn.functional.conv1d(
        mels, p("encoder/conv1/weight"), p("encoder/conv1/bias"), padding=1
    )
    x = _gelu(x)
    x = torch.nn.functional.conv1d(
        x, p("encoder/conv2/weight"), p("encoder/conv2/bias"), stride=2, padding=1
    )
    x = _gelu(x).transpose(1, 2)
    x = x + p("encoder/position_encodings/encodings")[: x.shape[1]]
    heads = int(np.asarray(t["encoder/num_heads"]))
    d = x.shape[-1]
    layer = 0
    while f"encoder/layer_{layer}/ffn/linear_0/weight" in t:
        pre = f"encoder/layer_{layer}/"
        h = _layer_norm(
            x,
            p(pre + "self_attention/layer_norm/gamma"),
            p(pre + "self_attention/layer_norm/beta"),
        )
        qkv = h @ p(pre + "self_attention/linear_0/weight").T + p(
            pre + "self_attention/linear_0/bias"
        )
        q, k, v = qkv.split(d, dim=-1)

        def split(z):
            return z.view(z.shape[0], z.shape[1], heads, -1).transpose(1, 2)

        q, k, v = split(q), split(k), split(v)
        att = torch.softmax(q @ k.transpose(-1, -2) / np.sqrt(d // heads), dim=-1)
        o = (att @ v).transpose(1, 2).reshape(x.shape)
        x = (
            x
            + o @ p(pre + "self_attention/linear_1/weight").T
            + p(pre + "self_attention/linear_1/bias")
        )
        h = _layer_norm(
            x, p(pre + "ffn/layer_norm/gamma"), p(pre + "ffn/layer_norm/beta")
        )
        h = _gelu(h @ p(pre + "ffn/linear_0/weight").T + p(pre + "ffn/linear_0/bias"))
        x = x + h @ p(pre + "ffn/linear_1/weight").T + p(pre + "ffn/linear_1/bias")
        layer += 1
    return _layer_norm(x, p("encoder/layer_norm/gamma"), p("encoder/layer_norm/beta"))


def test_ct2_file_round_trip_keeps_names_shapes_and_values(tmp_path):
    tensors = random_ct2_whisper_encoder(d_model=8, layers=2)
    path = tmp_path / "sub" / "model.bin"
    path.parent.mkdir()
    path.write_bytes(write_ct2_model("WhisperSpec", tensors))
    name, back = read_ct2_model(load_ct2_bytes(tmp_path))  # found in the folder
    assert name == "WhisperSpec"
    assert sorted(back) == sorted(tensors)
    for key, value in tensors.items():
        np.testing.assert_array_equal(back[key], value)


def test_converted_encoder_matches_a_direct_implementation():
    tensors = random_ct2_whisper_encoder(
        d_model=16, layers=2, heads=4, ffn=32, mels=6, positions=10
    )
    encoder = ct2_to_whisper_encoder(tensors)
    mels = torch.randn(1, 6, 20)  # 20 mel frames -> 10 positions
    with torch.no_grad():
        ours = encoder(mels).last_hidden_state
    reference = reference_whisper_encoder(tensors, mels)
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-4)


def test_state_zero_has_no_positions_and_log_mel_is_the_input():
    """Packed utterances sit anywhere in a window: state 0 must not carry positions."""
    tensors = random_ct2_whisper_encoder(
        d_model=16, layers=2, heads=4, ffn=32, mels=6, positions=10
    )
    encoder = ct2_to_whisper_encoder(tensors)
    mels = torch.randn(1, 6, 20)

    def extractor(audio, sampling_rate, return_tensors):
        return type("Features", (), {"input_features": mels})()

    states = whisper_hidden_states(encoder, extractor, np.zeros(1), [0, 2, "log_mel"])

    def p(name):
        return torch.from_numpy(np.asarray(tensors[name], dtype=np.float32))

    x = _gelu(
        torch.nn.functional.conv1d(
            mels, p("encoder/conv1/weight"), p("encoder/conv1/bias"), padding=1
        )
    )
    conv = _gelu(
        torch.nn.functional.conv1d(
            x, p("encoder/conv2/weight"), p("encoder/conv2/bias"), stride=2, padding=1
        )
    ).transpose(1, 2)[0]
    torch.testing.assert_close(states[:, 0], conv, atol=1e-4, rtol=1e-4)
    last = reference_whisper_encoder(tensors, mels)[0]
    torch.testing.assert_close(states[:, 1], last, atol=1e-4, rtol=1e-4)
    # the log-mel input, two 10 ms frames per 20 ms frame, zero beyond its 6 bins
    pairs = (mels[0, :, 0::2] + mels[0, :, 1::2]).T / 2
    torch.testing.assert_close(states[:, 2, :6], pairs)
    assert not states[:, 2, 6:].any()


def test_packing_starts_every_utterance_on_a_frame_and_never_overflows():
    hop = frame_hop((5, 2, 2, 2, 2, 2, 2))
    lengths = [16000, 12345, 30000, 8000, 47000, 321]
    windows = pack_windows(lengths, window=64000, hop=hop)
    seen = [i for members in windows for i, _ in members]
    assert seen == list(range(len(lengths)))  # in order, each once
    for members in windows:
        ends = []
        for i, offset in members:
            assert offset % hop == 0
            assert offset + lengths[i] <= 64000
            ends.append(offset + lengths[i])
        starts = [offset for _, offset in members]
        assert all(e <= s for e, s in zip(ends, starts[1:]))  # no overlap


class FrameClock(torch.nn.Module):
    """A fake Whisper encoder whose hidden state at frame j is j (every layer)."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.config = type("C", (), {"num_mel_bins": 80})()

    def forward(self, features, output_hidden_states=True):
        frames = torch.arange(1500, dtype=torch.float32).view(1, 1500, 1)
        states = tuple(frames.expand(1, 1500, 2) + i * 0 for i in range(3))
        return type("Out", (), {"hidden_states": states})()


def test_each_utterance_gets_the_frames_of_its_own_place_in_the_window(tmp_path):
    import soundfile as sf

    from speechbrain_skill.data.manifests import write_manifest

    rows = []
    lengths = [16000, 24000, 400000, 50000]  # the third fills most of a window
    for i, n in enumerate(lengths):
        path = tmp_path / f"u{i}.wav"
        sf.write(path, np.random.RandomState(i).randn(n) * 0.1, 16000)
        rows.append([f"u{i}", f"{n / 16000:.4f}", str(path), "1"])
    csv_path = tmp_path / "m.csv"
    write_manifest(csv_path, ["ID", "duration", "wav", "spk_id"], rows)
    targets = compute_whisper_targets(str(csv_path), FrameClock(), [1, 2])
    windows = pack_windows(lengths)
    assert len(windows) == 2
    for members in windows:
        for i, offset in members:
            clock = targets[f"u{i}"][:, 0, 0]
            expected_frames = (lengths[i] - 400) // 320 + 1
            assert len(clock) == expected_frames
            first = offset // 320
            torch.testing.assert_close(
                clock, torch.arange(first, first + expected_frames).float()
            )


def test_frame_targets_save_load_and_merge(tmp_path):
    a = FrameTargets({"a": torch.randn(4, 2, 3)}, [1, 4])
    b = FrameTargets({"b": torch.randn(2, 2, 3), "c": torch.randn(5, 2, 3)}, [1, 4])
    a.save(tmp_path / "a.pt")
    merged = FrameTargets.merge([FrameTargets.load(tmp_path / "a.pt"), b])
    assert merged.ids == ["a", "b", "c"]
    torch.testing.assert_close(merged["c"], b["c"])
    torch.testing.assert_close(merged["a"], a["a"])
    with pytest.raises(ValueError, match="repeat"):
        FrameTargets.merge([a, a])


def test_utterance_moments_are_those_of_each_utterances_mean_frame():
    rng = np.random.RandomState(0)
    utterances = {
        f"u{i}": torch.from_numpy(rng.randn(n, 2, 3) + rng.randn(1, 2, 3) * 2)
        for i, n in enumerate([5, 1, 9, 4])
    }
    targets = FrameTargets(utterances, [1, 4])
    # Stored as float16: the truth is computed from the stored values.
    means = np.stack([targets[u].numpy().mean(0) for u in utterances])
    mean, std = targets.utterance_moments(chunk=3)  # chunks split utterances
    np.testing.assert_allclose(mean.numpy(), means.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std.numpy(), means.std(0), rtol=1e-5, atol=1e-6)


def test_utterance_loss_is_the_frame_loss_of_the_valid_frames_means():
    from speechbrain_skill.pretraining.target_distill import (
        TargetHeads,
        distill_loss,
        utterance_loss,
    )

    torch.manual_seed(0)
    prediction, target = torch.randn(2, 6, 4), torch.randn(2, 6, 4)
    valid = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    heads = TargetHeads(3, 4, 1)
    frame_mean, frame_std = torch.randn(1, 4), torch.rand(1, 4) + 0.5
    utt_mean, utt_std = torch.randn(1, 4), torch.rand(1, 4) + 0.1
    heads.set_moments(frame_mean, frame_std, utt_mean, utt_std)
    center, scale = heads.utterance_center[0], heads.utterance_scale[0]
    # The moments of utterance means, in the units of standardised targets.
    torch.testing.assert_close(center, ((utt_mean - frame_mean) / frame_std)[0])
    torch.testing.assert_close(scale, (utt_std / frame_std)[0])
    loss = utterance_loss(prediction, target, valid, center, scale)
    means = [
        torch.stack([x[0].mean(0), x[1, :4].mean(0)]) for x in (prediction, target)
    ]
    expected = distill_loss(
        ((means[0] - center) / scale).unsqueeze(1),
        ((means[1] - center) / scale).unsqueeze(1),
        torch.ones(2, 1, dtype=torch.bool),
    )
    for got, want in zip(loss, expected):
        torch.testing.assert_close(got, want)
    # Invariances: the order of the frames, and whatever the padding holds.
    shuffled = prediction[:, torch.randperm(6)]
    shuffled[1, :4] = prediction[1, torch.randperm(4)]
    shuffled[1, 4:] = 100.0
    torch.testing.assert_close(
        utterance_loss(shuffled, target, valid, center, scale)[0], loss[0]
    )
    # An offset of one utterance spread moves the L1 by exactly one.
    offset = utterance_loss(target + scale, target, valid, center, scale)[1]
    torch.testing.assert_close(offset, torch.tensor(1.0))


@pytest.mark.slow
def test_targets_of_an_older_definition_are_recomputed(builtin_corpus, tmp_path):
    """A targets folder records what its states mean; an older one is not reused."""
    import json

    from recipe_runner import recipe_args, run_recipe

    yaml = (
        "recipes/LibriSpeech/self-supervised-learning/whisper_distillation/"
        "hparams/whisper_to_wavlm.yaml"
    )
    args = recipe_args(yaml, tmp_path / "run", builtin_corpus)
    run_recipe(yaml, args)
    targets = tmp_path / "run" / "targets"
    options = json.loads((targets / "options.json").read_text())
    assert options["definition"] == 2  # state 0 without Whisper's positions
    written = (targets / "train.pt").stat().st_mtime_ns
    run_recipe(yaml, args)  # same definition: reused
    assert (targets / "train.pt").stat().st_mtime_ns == written
    options["definition"] = 1  # as written before state 0 lost its positions
    (targets / "options.json").write_text(json.dumps(options) + "\n")
    run_recipe(yaml, args)
    assert (targets / "train.pt").stat().st_mtime_ns != written
    assert json.loads((targets / "options.json").read_text())["definition"] == 2


def test_utterance_weights_need_one_number_per_target():
    from speechbrain_skill.pretraining.target_distill import TargetDistillBrain

    brain = TargetDistillBrain.__new__(TargetDistillBrain)
    brain.hparams = type("H", (), {"student_layers": [2, 4], "utterance_weight": 0.1})
    assert brain.utterance_weights == [0.1, 0.1]
    brain.hparams.utterance_weight = [0.5, 0]
    assert brain.utterance_weights == [0.5, 0.0]
    brain.hparams.utterance_weight = [0.5]
    with pytest.raises(ValueError, match="one number per target"):
        _ = brain.utterance_weights


@pytest.mark.parametrize(
    "option, message",
    [
        ({"utterance_weight": "[0.1]"}, "utterance_weight needs one number per target"),
        ({"student_layers": "[1]"}, "whisper_layers and student_layers must pair up"),
    ],
)
def test_mismatched_targets_stop_in_one_line_before_any_work(
    builtin_corpus, tmp_path, option, message
):
    from recipe_runner import recipe_args, run_recipe

    yaml = (
        "recipes/LibriSpeech/self-supervised-learning/whisper_distillation/"
        "hparams/whisper_to_wavlm.yaml"
    )
    args = recipe_args(yaml, tmp_path / "run", builtin_corpus, **option)
    log = run_recipe(yaml, args, expect_failure=True)
    assert f"error: {message}" in log and "Traceback" not in log
    # Checked before any work: only the checkpointer's empty folder exists.
    assert [p.name for p in (tmp_path / "run").rglob("*")] == ["save"]


@pytest.mark.slow
def test_extra_audio_is_trained_on_and_sets_the_utterance_moments(
    builtin_corpus, tmp_path
):
    """``extra_train_folders``: its targets join training and the utterance scale."""
    import json

    from recipe_runner import recipe_args, run_recipe

    yaml = (
        "recipes/LibriSpeech/self-supervised-learning/whisper_distillation/"
        "hparams/whisper_to_wavlm.yaml"
    )
    extra = builtin_corpus / "dev-clean"
    args = recipe_args(
        yaml, tmp_path / "run", builtin_corpus, extra_train_folders=f"[{extra}]"
    )
    run_recipe(yaml, args)
    targets = tmp_path / "run" / "targets"
    corpus = FrameTargets.load(targets / "train.pt")
    added = FrameTargets.load(targets / "extra.pt")
    assert len(added) == len(list(extra.rglob("*.flac"))) > 0
    merged = FrameTargets.merge([corpus, added])
    heads = torch.load(
        next((tmp_path / "run" / "save").glob("CKPT+*")) / "heads.ckpt",
        weights_only=True,
    )
    frame_mean, frame_std = corpus.moments(seed=1986)
    utt_mean, utt_std = merged.utterance_moments()
    torch.testing.assert_close(
        heads["utterance_scale"], utt_std / frame_std, rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(
        heads["utterance_center"], (utt_mean - frame_mean) / frame_std
    )
    summary = json.loads(
        (tmp_path / "run" / "export" / "pretraining_summary.json").read_text()
    )
    assert summary["extra_train_folders"] == [str(extra)]
