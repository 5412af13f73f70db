"""Texts a user reads after a run: the summary, report.md and the model card."""

import json
from types import SimpleNamespace

from speechbrain_skill.distillation.report import format_summary, report_markdown
from speechbrain_skill.export.card import _architecture_lines


def _report(student_dir, **extra):
    return {
        "teacher": "t",
        "teacher_params": 100,
        "student_params": 40,
        "unpruned_student_params": 100,
        "fraction_of_teacher": 0.4,
        "sparsity_reached": 0.6,
        "target_sparsity": 0.75,
        "groups": [[0], [1, 2], [3, 4, 5], [6]],
        "student_layers": [0, 2, 5, 6],
        "student_dir": str(student_dir),
        **extra,
    }


def test_summary_names_the_exports_and_the_refusal(tmp_path):
    summary = {
        "folders": {"student": "s", "speechbrain": "s", "hf": "s/hf", "onnx": "s/onnx"},
        "refused": {"hf_stock": ["the last conv layer is soft"]},
    }
    (tmp_path / "export_summary.json").write_text(json.dumps(summary))
    text = format_summary(_report(tmp_path))
    assert "exports            SpeechBrain (hyperparams.yaml), hf/, onnx/" in text
    assert "hf_stock refused: the last conv layer is soft" in text
    # Why layer 5: the deepest teacher layer of its group.
    assert "[3, 4, 5] -> student layer 5" in text and "deepest" in text


def test_summary_without_a_maximum_duration_says_so(tmp_path):
    kept = {"kept": 9, "utterances": 10, "too_short": 1, "too_long": 0}
    text = format_summary(
        _report(
            tmp_path,
            duration_filter={**kept, "min_duration": 1.0, "max_duration": None},
        )
    )
    assert "(1 shorter than 1.0 s)" in text and "None" not in text


def test_report_md_links_every_plot_that_exists(tmp_path):
    student = tmp_path / "student"
    student.mkdir()
    (student / "curves.png").write_bytes(b"")
    (tmp_path / "layer_analysis").mkdir()
    (tmp_path / "layer_analysis" / "similarity_heatmap.png").write_bytes(b"")
    text = report_markdown(_report(student), tmp_path, student)
    assert "- [curves.png](curves.png): " in text
    assert "(../layer_analysis/similarity_heatmap.png): " in text
    assert "dendrogram" not in text  # not written, not linked


def test_card_calls_a_layer_without_heads_removed():
    config = SimpleNamespace(
        num_layers=2,
        num_attention_heads=4,
        attention_heads=[[0, 2], []],
        ffn_dims=[64, 0],
        attention_present=[True, True],
        ffn_present=[True, True],
    )
    first, second = _architecture_lines(config)[2:]
    assert first == "| 1 | 2/4 [0, 2] | 64 | kept | kept |"
    assert second == "| 2 | 0/4 | 0 | removed (no head left) | removed (no unit left) |"
