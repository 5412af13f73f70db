"""Save / load of student directories: round trip, pruned or gated, standalone."""

import json
import os
import subprocess
import sys

import pytest
import torch
from student_helpers import padded_batch, random_hf_model

from speechbrain_skill.lobes.student import (
    PrunableSSLEncoder,
    load_student,
    num_params,
    save_student,
)


def outputs(model, wavs, wav_lens):
    with torch.no_grad():
        return model(wavs, wav_lens)[0]


@pytest.fixture(scope="module")
def pruned_student():
    student = PrunableSSLEncoder.from_hf(
        random_hf_model("wavlm"),
        prune_conv=True,
        prune_heads=True,
        prune_ffn_units=True,
        prune_attention_layer=True,
    )
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in student.gate_parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 2.0 + 1.0)
    return student.eval().prune()


def test_round_trip_of_a_pruned_student(pruned_student, tmp_path):
    save_student(pruned_student, tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]
    document = json.loads((tmp_path / "config.json").read_text())
    assert document["attention_heads"] == pruned_student.config.attention_heads
    assert document["ffn_dims"] == pruned_student.config.ffn_dims
    loaded = load_student(tmp_path)
    assert loaded.config == pruned_student.config
    assert not loaded.training
    assert num_params(loaded) == num_params(pruned_student)
    wavs, wav_lens = padded_batch()
    assert torch.equal(
        outputs(loaded, wavs, wav_lens), outputs(pruned_student, wavs, wav_lens)
    )


def test_round_trip_of_a_gated_student_keeps_gates(tmp_path):
    student = PrunableSSLEncoder.from_hf(
        random_hf_model("hubert"), prune_heads=True, prune_ffn_units=True
    ).eval()
    with torch.no_grad():
        for param in student.gate_parameters():
            param.normal_(0.0, 2.0)
    save_student(student, tmp_path)
    loaded = load_student(tmp_path)
    for name, gate in student.named_gates().items():
        assert torch.equal(loaded.named_gates()[name].log_alpha, gate.log_alpha)
    wavs, wav_lens = padded_batch()
    assert torch.equal(
        outputs(loaded, wavs, wav_lens), outputs(student, wavs, wav_lens)
    )


def test_loading_needs_neither_transformers_nor_training_code(pruned_student, tmp_path):
    save_student(pruned_student, tmp_path)
    script = (
        "import sys, torch\n"
        "from speechbrain_skill.lobes.student import load_student\n"
        f"model = load_student({str(tmp_path)!r})\n"
        "hidden, _ = model(torch.zeros(1, 8000))\n"
        "assert 'transformers' not in sys.modules\n"
        "print(tuple(hidden.shape))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "(5, 1, 24, 32)"


def test_missing_files_give_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_student(tmp_path)


def test_unknown_config_fields_are_refused(pruned_student, tmp_path):
    save_student(pruned_student, tmp_path)
    document = json.loads((tmp_path / "config.json").read_text())
    document["mystery"] = 1
    (tmp_path / "config.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match="mystery"):
        load_student(tmp_path)
