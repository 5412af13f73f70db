import json

import pytest
import torch

from speechbrain_skill.lobes.hf_ssl import (
    TeacherLoadError,
    load_hf_ssl_model,
    waveform_normalization,
)
from speechbrain_skill.lobes.teacher import FrozenSSLTeacher
from speechbrain_skill.lobes.tiny_models import save_tiny_model


@pytest.mark.parametrize("model_type", ["wavlm", "hubert", "wav2vec2"])
def test_tiny_model_loads_through_the_hub_loading_path(tmp_path, model_type):
    path = save_tiny_model(tmp_path, model_type, seed=1)
    model = load_hf_ssl_model(path)
    assert model.config.model_type == model_type
    assert not model.training and model.config.layerdrop == 0.0
    # Same weights as a model saved with the same seed: the loader changed nothing.
    again = load_hf_ssl_model(save_tiny_model(tmp_path / "again", model_type, seed=1))
    for (name, a), (_, b) in zip(
        model.state_dict().items(), again.state_dict().items()
    ):
        assert torch.equal(a, b), name


def test_unknown_sources_fail_clearly(tmp_path):
    with pytest.raises(TeacherLoadError, match="not an existing local directory"):
        load_hf_ssl_model("no-such-org/no-such-model")
    with pytest.raises(TeacherLoadError, match="Unknown built-in model"):
        load_hf_ssl_model("builtin:does-not-exist")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(TeacherLoadError, match="model_type 'bert'"):
        load_hf_ssl_model(tmp_path)


def test_normalisation_flag_is_read_from_the_feature_extractor(tmp_path):
    path = save_tiny_model(tmp_path, "wav2vec2")
    assert waveform_normalization(path) is False
    config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    config["do_normalize"] = True
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    assert waveform_normalization(path) is True


def test_teacher_matches_hf_per_utterance_and_stays_frozen(tiny_hubert):
    teacher = FrozenSSLTeacher(tiny_hubert)
    teacher.train()
    assert not teacher.model.training
    assert all(not p.requires_grad for p in teacher.parameters())
    torch.manual_seed(0)
    wavs = torch.randn(2, 8000)
    wavs[1, 4000:] = 0.0
    hidden, frame_lens = teacher(wavs, torch.tensor([1.0, 0.5]))
    assert hidden.shape[0] == teacher.num_hidden_states == 5
    assert frame_lens.tolist() == [24, 12]
    # The full-length utterance, batched with a padded one, equals the model run on
    # it alone: padding of a neighbour does not leak into it.
    reference = load_hf_ssl_model(tiny_hubert)
    with torch.no_grad():
        alone = reference(wavs[:1], output_hidden_states=True).hidden_states
    torch.testing.assert_close(
        hidden[:, 0], torch.stack(alone)[:, 0], atol=1e-5, rtol=0
    )
