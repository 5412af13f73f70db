"""Configuration errors are reported before any data preparation or training."""

import pytest
from hyperpyyaml import load_hyperpyyaml
from recipe_runner import RECIPE

from speechbrain_skill.distillation.stages import DistillationPipeline
from speechbrain_skill.lobes.hf_ssl import TeacherLoadError


def _pipeline(tmp_path, teacher, yaml="skill_wavlm.yaml", **overrides):
    settings = {
        "data_folder": str(tmp_path),
        "output_folder": str(tmp_path / "out"),
        "teacher_source": str(teacher),
        **overrides,
    }
    with open(RECIPE / "hparams" / yaml) as handle:
        hparams = load_hyperpyyaml(handle, settings)
    return DistillationPipeline(hparams, {"device": "cpu"})


def test_valid_configuration_passes(tmp_path, tiny_wavlm):
    pipeline = _pipeline(tmp_path, tiny_wavlm)
    assert pipeline.num_states == 5


@pytest.mark.parametrize("sparsity", [0.0, 1.0, 1.2, -0.1])
def test_target_sparsity_outside_0_1(tmp_path, tiny_wavlm, sparsity):
    with pytest.raises(ValueError, match="target_sparsity"):
        _pipeline(tmp_path, tiny_wavlm, target_sparsity=sparsity)


def test_more_groups_than_hidden_states(tmp_path, tiny_wavlm):
    with pytest.raises(ValueError, match=r"K must be between 1 and .* \(5\), got 6"):
        _pipeline(tmp_path, tiny_wavlm, num_groups=6)


def test_group_index_out_of_range(tmp_path, tiny_wavlm):
    with pytest.raises(ValueError, match="out of range"):
        _pipeline(
            tmp_path, tiny_wavlm, yaml="dphubert_wavlm.yaml", groups=[[0], [4], [8]]
        )


def test_student_layer_out_of_range(tmp_path, tiny_wavlm):
    with pytest.raises(ValueError, match="student_layers"):
        _pipeline(tmp_path, tiny_wavlm, student_layers=[0, 2, 9, 4])


def test_unknown_teacher(tmp_path):
    with pytest.raises(TeacherLoadError, match="no-such-teacher"):
        _pipeline(tmp_path, "example-org/no-such-teacher")
