"""The s3prl bridge: s3prl's own interfaces on every student kind and the teacher.

s3prl (optional extra) builds the upstream by name from ``s3prl.hub``; its
hidden states must be the student's, on the real frames of a padded batch of
three lengths, and its ``Featurizer`` must take them.
"""

import pytest
import torch
from student_helpers import padded_batch
from test_export import KINDS, make_student

from speechbrain_skill.lobes.frames import lengths_to_mask, relative_to_absolute
from speechbrain_skill.lobes.student import save_student
from speechbrain_skill.lobes.upstream import load_upstream_model
from speechbrain_skill.s3prl_bridge.__main__ import prepare_arguments
from speechbrain_skill.s3prl_bridge.hub import register

pytest.importorskip("s3prl", reason="s3prl is an optional extra: pip install .[s3prl]")
register()
from s3prl.nn import Featurizer, S3PRLUpstream  # noqa: E402

TOLERANCE = 1e-5


@pytest.fixture(scope="module", params=(*KINDS, "builtin_teacher"))
def source(request, tmp_path_factory):
    if request.param == "builtin_teacher":
        return "builtin:tiny-wavlm"
    folder = tmp_path_factory.mktemp(request.param)
    return save_student(make_student(request.param), folder)


def zero_padded_batch():
    """Three lengths, zeros after each end (what s3prl's list of waveforms gives)."""
    wavs, wav_lens = padded_batch()
    lengths = relative_to_absolute(wav_lens, wavs.shape[1]).long()
    return wavs * lengths_to_mask(lengths, wavs.shape[1]), wav_lens, lengths


def test_s3prl_upstream_by_name_returns_our_hidden_states(source):
    """Truth: our model on the same zero-padded batch.

    Not each utterance alone: the GroupNorm of conv layer 0 (Base models)
    normalises over all samples, padding included, in our model, in Hugging
    Face's and in s3prl's own HuBERT / WavLM experts alike.
    """
    wavs, wav_lens, lengths = zero_padded_batch()
    upstream = S3PRLUpstream("speechbrain_skill", path_or_url=str(source)).eval()
    with torch.no_grad():
        all_hs, all_lens = upstream(wavs, lengths)
    model, _ = load_upstream_model(source)
    with torch.no_grad():
        batch, frame_lens = model.eval()(wavs, wav_lens)
    assert len(all_hs) == batch.shape[0] == upstream.num_layers
    for layer, (hs, hs_len) in enumerate(zip(all_hs, all_lens)):
        # s3prl counts ceil(samples / 320) frames, the CNN floor((n - 400) / 320) + 1.
        assert torch.all(hs_len >= frame_lens)
        for row, count in enumerate(frame_lens.tolist()):
            ours = batch[layer, row, :count]
            assert (hs[row, :count] - ours).abs().max() <= TOLERANCE

    featurizer = Featurizer(upstream)
    feats, feat_lens = featurizer(all_hs, all_lens)
    assert feats.shape == (3, int(all_lens[0].max()), batch.shape[-1])
    assert torch.equal(feat_lens, all_lens[0])
    # Zero-initialised weights: the plain mean of the layers.
    mean = torch.stack(all_hs).mean(0)
    assert torch.allclose(feats, mean, atol=TOLERANCE)


def test_runner_featurizer_accepts_the_expert(source):
    from s3prl import hub
    from s3prl.upstream.interfaces import Featurizer as RunnerFeaturizer

    expert = hub.speechbrain_skill(ckpt=str(source), model_config=None, refresh=False)
    featurizer = RunnerFeaturizer(expert, upstream_device="cpu")
    wavs = [torch.randn(16000), torch.randn(9000)]
    with torch.no_grad():
        feats = featurizer(wavs, expert(wavs))
    assert [tuple(f.shape) for f in feats] == [(49, featurizer.output_dim)] + [
        (28, featurizer.output_dim)
    ]


def test_launcher_defaults_and_missing_config(tmp_path):
    argv = prepare_arguments(["-m", "train", "-d", "emotion", "-c", __file__], False)
    assert argv[-2:] == ["--device", "cpu"]
    assert "--device" not in prepare_arguments(["-m", "train", "-c", __file__], True)
    with pytest.raises(SystemExit, match="ships no configs"):
        prepare_arguments(["-m", "train", "-d", "emotion"], False)


def _s3prl_emotion_meta(root, meta):
    """s3prl's emotion metadata (its IEMOCAP preprocessing's json) for our analog."""
    import json

    from iemocap_prepare import read_labels

    labels = {"neu": 0, "hap": 1, "ang": 2, "sad": 3}
    by_session = {}
    for session in range(1, 6):
        wavs = f"Session{session}/sentences/wav"
        by_session[session] = [
            {
                "path": f"{wavs}/{utt.rsplit('_', 1)[0]}/{utt}.wav",
                "label": label,
                "speaker": utt.rsplit("_", 1)[1][0],
            }
            for utt, label in read_labels(root / f"Session{session}")
        ]
    for fold in range(1, 6):
        folder = meta / f"Session{fold}"
        folder.mkdir(parents=True)
        train = [item for s, items in by_session.items() if s != fold for item in items]
        for name, items in (("train", train), ("test", by_session[fold])):
            document = {"labels": labels, "meta_data": items}
            (folder / f"{name}_meta_data.json").write_text(json.dumps(document))


@pytest.mark.slow
def test_s3prl_runner_trains_its_emotion_expert_on_a_student(tmp_path):
    """s3prl's own runner and emotion expert, a few steps, through the launcher."""
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    repo = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(repo / "recipes" / "IEMOCAP" / "ER"))
    from speechbrain_skill.data.analogs.er import build_er_analog

    root = Path(build_er_analog(tmp_path / "analog", utterances_per_style=1))
    _s3prl_emotion_meta(root, tmp_path / "meta")
    student = save_student(make_student("pruned_wavlm"), tmp_path / "student")
    config = {
        "runner": {
            "total_steps": 4,
            "gradient_clipping": 1,
            "gradient_accumulate_steps": 1,
            "log_step": 2,
            "eval_step": 4,
            "save_step": 4,
            "max_keep": 1,
            "eval_dataloaders": ["dev"],
        },
        "optimizer": {"name": "TorchOptim", "torch_optim_name": "Adam", "lr": 1e-3},
        "downstream_expert": {
            "datarc": {
                "root": str(root),
                "meta_data": str(tmp_path / "meta"),
                "test_fold": "fold1",
                "pre_load": True,
                "train_batch_size": 2,
                "eval_batch_size": 2,
                "num_workers": 0,
                "valid_ratio": 0.2,
            },
            "modelrc": {
                "projector_dim": 16,
                "select": "UtteranceLevel",
                "UtteranceLevel": {"pooling": "MeanPooling"},
            },
        },
    }
    config_path = tmp_path / "emotion.yaml"
    config_path.write_text(yaml.safe_dump(config))
    expdir = tmp_path / "exp"
    command = [
        sys.executable, "-m", "speechbrain_skill.s3prl_bridge", "-m", "train",
        "-u", "speechbrain_skill", "-k", str(student), "-d", "emotion",
        "-c", str(config_path), "-p", str(expdir),
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    checkpoint = torch.load(
        expdir / "states-4.ckpt", map_location="cpu", weights_only=False
    )
    weights = checkpoint["Featurizer"]["weights"]
    assert weights.shape == (5,) and weights.abs().max() > 0  # trained from zeros
    assert "dev at step 4" in (expdir / "log.log").read_text()
