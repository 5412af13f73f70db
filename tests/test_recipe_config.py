"""Configuration errors stop the distillation recipe before any training.

Plain settings (step budgets, run options, the data folder) are checked before
the yaml builds the teacher, so they fail at once even when the teacher is a
hub id that cannot be downloaded; settings that depend on the teacher's depth
are checked right after it loads.
"""

import pytest
from hyperpyyaml import load_hyperpyyaml
from recipe_runner import RECIPE, run_recipe

from speechbrain_skill.distillation import stages
from speechbrain_skill.lobes.hf_ssl import TeacherLoadError
from speechbrain_skill.training.checks import ConfigurationError, read_settings

HUB_TEACHER = "example-org/no-such-teacher"


def _check_models(tmp_path, teacher, yaml="skill_wavlm.yaml", **overrides):
    settings = {
        "data_folder": str(tmp_path),
        "output_folder": str(tmp_path / "out"),
        "teacher_source": str(teacher),
        **overrides,
    }
    with open(RECIPE / "hparams" / yaml) as handle:
        hparams = load_hyperpyyaml(handle, settings)
    stages.check_models(
        hparams["teacher"],
        hparams["student"],
        hparams["groups"],
        hparams["num_groups"],
        hparams["student_layers"],
        hparams["auxiliary_loss"],
    )
    return hparams


def _check_settings(tmp_path, run_opts=None, yaml="skill_wavlm.yaml", **overrides):
    settings = {
        "data_folder": str(tmp_path),
        "output_folder": str(tmp_path / "out"),
        "teacher_source": HUB_TEACHER,
        **overrides,
    }
    plain = read_settings(RECIPE / "hparams" / yaml, settings)
    stages.check_settings(plain, run_opts or {})


def test_valid_configuration_passes(tmp_path, tiny_wavlm):
    _check_settings(tmp_path)
    hparams = _check_models(tmp_path, tiny_wavlm)
    assert hparams["teacher"].num_hidden_states == 5


@pytest.mark.parametrize("sparsity", [0.0, 1.0, 1.2, -0.1])
def test_target_sparsity_outside_0_1(tmp_path, sparsity):
    with pytest.raises(ValueError, match="target_sparsity"):
        _check_settings(tmp_path, target_sparsity=sparsity)


@pytest.mark.parametrize(
    "yaml, key, value",
    [
        ("skill_wavlm.yaml", "prune_steps", 0),
        ("skill_wavlm.yaml", "final_steps", -5),
        ("skill_wavlm.yaml", "prune_steps", 2.5),
        ("distilhubert.yaml", "final_steps", 0),
        ("skill_wavlm.yaml", "prune_warmup_steps", -1),
        ("skill_wavlm.yaml", "max_batch_seconds", 0.0),
    ],
)
def test_step_budgets_and_lengths_must_be_positive(tmp_path, yaml, key, value):
    with pytest.raises(ConfigurationError, match=key):
        _check_settings(tmp_path, yaml=yaml, **{key: value})


def test_checkpoint_interval_conflict_names_the_fix(tmp_path):
    with pytest.raises(ConfigurationError, match="--ckpt_interval_minutes=0"):
        _check_settings(tmp_path, run_opts={"ckpt_interval_steps": 50})
    _check_settings(
        tmp_path, run_opts={"ckpt_interval_steps": 50, "ckpt_interval_minutes": 0}
    )


def test_missing_data_folder_and_missing_manifests(tmp_path):
    with pytest.raises(ConfigurationError, match="does not exist"):
        _check_settings(tmp_path, data_folder=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigurationError, match="skip_prep"):
        _check_settings(tmp_path, skip_prep=True)


def test_on_stale_value(tmp_path):
    with pytest.raises(ConfigurationError, match="on_stale"):
        _check_settings(tmp_path, on_stale="ignore")


def test_more_groups_than_hidden_states(tmp_path, tiny_wavlm):
    with pytest.raises(ValueError, match=r"K must be between 1 and .* \(5\), got 6"):
        _check_models(tmp_path, tiny_wavlm, num_groups=6)


def test_group_index_out_of_range(tmp_path, tiny_wavlm):
    with pytest.raises(ValueError, match="out of range"):
        _check_models(
            tmp_path, tiny_wavlm, yaml="dphubert_wavlm.yaml", groups=[[0], [4], [8]]
        )


def test_student_layer_out_of_range(tmp_path, tiny_wavlm):
    with pytest.raises(ValueError, match="student_layers"):
        _check_models(tmp_path, tiny_wavlm, student_layers=[0, 2, 9, 4])


def test_unknown_teacher_suggests_the_shipped_one(tmp_path):
    with pytest.raises(TeacherLoadError, match="no-such-teacher") as error:
        _check_models(tmp_path, HUB_TEACHER)
    assert "builtin:tiny-wavlm" in str(error.value)


# ------------------------------------------------------------ through train.py
def _fails_before_the_teacher(tmp_path, *args):
    """Run train.py (a hub teacher that cannot load here); return its log."""
    log = run_recipe(
        "skill_wavlm.yaml",
        [f"--output_folder={tmp_path / 'out'}", "--device=cpu", *args],
        expect_failure=True,
    )
    assert "Could not load teacher" not in log and "TeacherLoadError" not in log
    return log


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        # The yaml's default teacher is a hub id: offline, loading it fails.
        (["--data_folder={nowhere}"], "data_folder '{nowhere}' does not exist"),
        (["--data_folder={here}", "--prune_steps=0"], "prune_steps must be"),
        (["--data_folder={here}", "--final_steps=-5"], "final_steps must be"),
        (
            ["--data_folder={here}", "--ckpt_interval_steps=2"],
            "Add --ckpt_interval_minutes=0",
        ),
    ],
)
def test_recipe_reports_configuration_errors_before_loading_the_teacher(
    tmp_path, args, message
):
    paths = {"nowhere": tmp_path / "nowhere", "here": tmp_path}
    args = [arg.format(**paths) for arg in args]
    log = _fails_before_the_teacher(tmp_path, *args)
    assert message.format(**paths) in log


@pytest.mark.slow
@pytest.mark.parametrize(
    "hparam_file",
    [
        "recipes/SpeechCommands/KWS/hparams/kws_mean_pool.yaml",
        "recipes/VoxCeleb1/SID/hparams/sid_mean_pool.yaml",
        "recipes/LibriSpeech/ASR/hparams/ctc_bilstm.yaml",
    ],
)
def test_downstream_recipes_check_the_data_folder_before_the_upstream(
    hparam_file, tmp_path
):
    # The yamls' default upstream is a hub id: offline, loading it fails.
    nowhere = tmp_path / "nowhere"
    log = run_recipe(
        hparam_file,
        [f"--data_folder={nowhere}", f"--output_folder={tmp_path / 'out'}"],
        expect_failure=True,
    )
    assert f"data_folder '{nowhere}' does not exist" in log
    assert "Could not load" not in log
