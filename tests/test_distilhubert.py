"""DistilHuBERT: student shape, prediction heads, recipe run and Hugging Face export."""

import json

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml
from recipe_runner import RECIPE, recipe_args, run_recipe
from transformers import AutoModel, HubertConfig, WavLMConfig

from speechbrain_skill.data.dataio import AudioBatch
from speechbrain_skill.distillation.brains import DistillationBrain
from speechbrain_skill.distillation.losses import DistillationLoss
from speechbrain_skill.export.hf_stock import save_hf_stock, stock_export_problems
from speechbrain_skill.lobes.heads import PredictionHeads
from speechbrain_skill.lobes.student import (
    PrunableSSLEncoder,
    load_student,
    num_params,
    student_config_from_hf,
)
from speechbrain_skill.lobes.teacher import FrozenSSLTeacher


def test_base_shape_student_has_23_49m_parameters():
    config = student_config_from_hf(HubertConfig(), num_layers=2)
    assert num_params(PrunableSSLEncoder(config)) == 23_492_224  # 23.49M
    heads = PredictionHeads([2, 2, 2], 768)
    assert num_params(heads) == 3 * 2 * (768 * 768 + 768)
    # WavLM adds its relative-position table (320 x 12) and bias gates (532 per layer).
    config = student_config_from_hf(WavLMConfig(), num_layers=2)
    assert num_params(PrunableSSLEncoder(config)) == 23_492_224 + 3840 + 2 * 532


@pytest.mark.parametrize("yaml", ["distilhubert.yaml", "distilhubert_wavlm.yaml"])
def test_recipe_yaml_builds_a_two_layer_student_with_three_heads(
    yaml, tmp_path, tiny_hubert
):
    overrides = {
        "data_folder": str(tmp_path),
        "output_folder": str(tmp_path / "out"),
        "teacher_source": tiny_hubert,
        "groups": [[2], [3], [4]],
    }
    with open(RECIPE / "hparams" / yaml) as handle:
        hparams = load_hyperpyyaml(handle, overrides)
    assert hparams["student"].config.num_layers == 2
    assert hparams["student_layers"] == [2, 2, 2]
    assert hparams["distill_loss"].cos_type == "neg_log_sigmoid"
    assert hparams["student_input_transform"] is None
    assert hparams["extra_modules"] == {}
    heads = hparams["heads"](student_layers=[2, 2, 2], input_dim=32)
    assert isinstance(heads, PredictionHeads) and len(heads.heads) == 3


def test_loss_decreases_on_a_fixed_batch(tiny_hubert):
    torch.manual_seed(0)
    teacher = FrozenSSLTeacher(tiny_hubert)
    student = PrunableSSLEncoder.from_hf(tiny_hubert, num_layers=2).train()
    hparams = {
        "distill_loss": DistillationLoss(cos_type="neg_log_sigmoid"),
        "log_interval": 10**6,
    }
    modules = {
        "teacher": teacher,
        "student": student,
        "heads": PredictionHeads([2, 2, 2], 32),
    }
    brain = DistillationBrain(
        [[2], [3], [4]],
        modules=modules,
        opt_class=lambda params: torch.optim.AdamW(params, lr=1e-3),
        hparams=hparams,
        run_opts={},
    )
    brain.init_optimizers()
    batch = AudioBatch(
        [{"id": "a", "sig": torch.randn(16000)}, {"id": "b", "sig": torch.randn(9000)}]
    )
    losses = [float(brain.fit_batch(batch)) for _ in range(20)]
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.fixture(scope="module")
def distilhubert_run(builtin_corpus, tiny_hubert, tmp_path_factory):
    output = tmp_path_factory.mktemp("distilhubert_run")
    run_recipe(
        "distilhubert.yaml",
        recipe_args(
            "distilhubert.yaml",
            output,
            builtin_corpus,
            teacher_source=tiny_hubert,
            groups="[[2],[3],[4]]",
            final_steps=6,
        ),
    )
    return output


@pytest.mark.slow
def test_recipe_trains_exports_and_reloads(distilhubert_run):
    output = distilhubert_run
    history = [json.loads(x) for x in (output / "final" / "history.jsonl").open()]
    assert [entry["step"] for entry in history] == list(range(1, 7))
    assert not (output / "prune").exists()
    report = json.loads((output / "student" / "report.json").read_text())
    assert report["groups"] == [[2], [3], [4]] and report["student_layers"] == [2, 2, 2]
    student = load_student(output / "student")
    assert student.config.num_layers == 2
    hidden, _ = student(torch.randn(1, 16000))
    assert hidden.shape[0] == 3 and torch.isfinite(hidden).all()
    heads = PredictionHeads([2, 2, 2], 32)
    heads.load_state_dict(torch.load(output / "student" / "heads.ckpt"))


@pytest.mark.slow
def test_recipe_exports_give_the_same_hidden_states(distilhubert_run):
    student = load_student(distilhubert_run / "student")
    summary = json.loads(
        (distilhubert_run / "student" / "export_summary.json").read_text()
    )
    assert summary["refused"] == {} and max(summary["parity"].values()) <= 1e-4
    hf_model = AutoModel.from_pretrained(
        distilhubert_run / "student" / "hf_stock"
    ).eval()
    assert type(hf_model).__name__ == "HubertModel"
    assert hf_model.config.num_hidden_layers == 2
    compact = AutoModel.from_pretrained(
        distilhubert_run / "student" / "hf", trust_remote_code=True
    ).eval()
    wavs = torch.randn(2, 16000)
    with torch.no_grad():
        ours, _ = student(wavs)
        for model in (hf_model, compact):
            theirs = model(wavs, output_hidden_states=True).hidden_states
            assert torch.allclose(torch.stack(theirs), ours, atol=1e-5)
    card = (distilhubert_run / "student" / "README.md").read_text()
    assert "teacher layers [2] -> student layer 2" in card


def test_wavlm_student_exports_to_hf_with_the_same_hidden_states(tiny_wavlm, tmp_path):
    student = PrunableSSLEncoder.from_hf(tiny_wavlm, num_layers=2)
    assert stock_export_problems(student) == []
    hf_model = AutoModel.from_pretrained(save_hf_stock(student, tmp_path)).eval()
    assert type(hf_model).__name__ == "WavLMModel"
    wavs = torch.randn(1, 20000)
    with torch.no_grad():
        ours, _ = student(wavs)
        theirs = hf_model(wavs, output_hidden_states=True).hidden_states
    assert torch.allclose(torch.stack(theirs), ours, atol=1e-5)


def test_gated_student_is_not_exported_to_hf(tiny_wavlm):
    student = PrunableSSLEncoder.from_hf(tiny_wavlm, prune_heads=True)
    assert any("gates" in problem for problem in stock_export_problems(student))
    with pytest.raises(ValueError, match="gates"):
        save_hf_stock(student, "unused")


def test_empty_batch_is_skipped_alone_and_a_zero_loss_step_under_ddp(tiny_hubert):
    from speechbrain_skill.data.dataio import SkippedBatch

    student = PrunableSSLEncoder.from_hf(tiny_hubert, num_layers=2).train()
    hparams = {
        "distill_loss": DistillationLoss(cos_type="neg_log_sigmoid"),
        "log_interval": 10**6,
    }
    modules = {
        "teacher": FrozenSSLTeacher(tiny_hubert),
        "student": student,
        "heads": PredictionHeads([2, 2, 2], 32),
    }
    brain = DistillationBrain(
        [[2], [3], [4]],
        modules=modules,
        opt_class=lambda params: torch.optim.SGD(params, lr=0.1),
        hparams=hparams,
        run_opts={},
    )
    brain.init_optimizers()
    before = [p.detach().clone() for p in brain.main_parameters()]
    brain.fit_batch(SkippedBatch([("a", "missing")]))
    assert brain.optimizer_step == 0 and brain.skipped == {"missing": {"a"}}
    brain.distributed_launch = True
    brain.fit_batch(SkippedBatch([("b", "NaN or Inf samples")]))
    # The step ran (as on the other processes), with a zero loss: nothing moved.
    assert brain.optimizer_step == 1
    assert brain.skipped == {"missing": {"a"}, "NaN or Inf samples": {"b"}}
    assert all(torch.equal(a, b) for a, b in zip(before, brain.main_parameters()))


def test_s3prl_distiller_settings(tmp_path, tiny_hubert):
    overrides = {
        "data_folder": str(tmp_path),
        "output_folder": str(tmp_path / "out"),
        "teacher_source": tiny_hubert,
        "groups": [[2], [3], [4]],
    }
    with open(RECIPE / "hparams" / "distilhubert.yaml") as handle:
        hparams = load_hyperpyyaml(handle, overrides)
    student = hparams["student"]
    # s3prl's DistillerModel: no LayerNorm before post_extract_proj.
    assert student.feature_projection.layer_norm is None
    assert hparams["max_grad_norm"] == 5.0
    assert hparams["final_hparams"]["bias_weight_decay"] == 0.0
    brain = DistillationBrain(
        [[2], [3], [4]],
        modules={
            "teacher": hparams["teacher"],
            "student": student,
            "heads": hparams["heads"](student_layers=[2, 2, 2], input_dim=32),
        },
        opt_class=hparams["final_opt_class"],
        hparams=hparams["final_hparams"],
        run_opts={},
    )
    brain.init_optimizers()
    decayed, free = brain.optimizer.param_groups
    assert decayed["betas"] == (0.9, 0.98) and decayed["eps"] == 1e-6
    assert decayed["weight_decay"] == 0.01 and free["weight_decay"] == 0.0
    names = {id(p): n for n, p in brain.named_main_parameters()}
    assert all(names[id(p)].endswith("bias") for p in free["params"])
    assert not any(names[id(p)].endswith("bias") for p in decayed["params"])


def test_feature_grad_scale_scales_only_the_cnn_gradient(tiny_hubert):
    wavs = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0))
    grads = {}
    for scale in (1.0, 0.1):
        student = PrunableSSLEncoder.from_hf(
            tiny_hubert, num_layers=2, feature_grad_scale=scale
        ).train()
        hidden, _ = student(wavs)
        hidden[-1].pow(2).mean().backward()
        grads[scale] = {n: p.grad.clone() for n, p in student.named_parameters()}
        with torch.no_grad():
            assert torch.equal(student(wavs)[0], hidden.detach())
    for name, grad in grads[1.0].items():
        expected = 0.1 * grad if name.startswith("feature_extractor.") else grad
        assert torch.allclose(grads[0.1][name], expected, rtol=1e-5, atol=1e-9), name
