"""Opt-in torch.compile: same outputs, same parameter names, eager fallback on failure.

The compiler backend used here is dynamo's ``eager`` backend (graph capture
without code generation), which keeps the test fast; the inductor path is
measured in benchmarks/bench_reference_throughput.py (``--compile``).
"""

import logging

import torch
from student_helpers import tiny_student_config

from speechbrain_skill.lobes.student import PrunableSSLEncoder
from speechbrain_skill.training.compile import compile_forward, is_compiled


def _student():
    config = tiny_student_config(
        prune_heads=True,
        prune_ffn_units=True,
    )
    torch.manual_seed(0)
    return PrunableSSLEncoder(config).eval()


def test_compiled_student_matches_eager_and_keeps_parameter_names():
    student = _student()
    wavs, wav_lens = torch.randn(2, 8000), torch.tensor([1.0, 0.6])
    with torch.no_grad():
        expected, expected_lens = student(wavs, wav_lens)
    names = list(student.state_dict())
    compile_forward(student, backend="eager")
    with torch.no_grad():
        hidden, frame_lens = student(wavs, wav_lens)
    assert is_compiled(student)
    assert list(student.state_dict()) == names
    torch.testing.assert_close(hidden, expected)
    assert torch.equal(frame_lens, expected_lens)


def _failing_backend(graph_module, example_inputs):
    raise RuntimeError("no compiler on this machine")


def test_compile_failure_falls_back_to_eager_with_a_warning(caplog):
    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU())
    inputs = torch.randn(3, 4)
    expected = layer(inputs)
    compile_forward(layer, name="the layer", backend=_failing_backend)
    with caplog.at_level(logging.WARNING):
        output = layer(inputs)
        again = layer(inputs)
    assert not is_compiled(layer)
    messages = [r.message for r in caplog.records]
    assert any("the layer" in m and "eagerly" in m for m in messages)
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(again, expected)


def test_compiled_teacher_matches_eager_with_inference_mode_outside_the_graph():
    from student_helpers import padded_batch, random_hf_model

    from speechbrain_skill.lobes.teacher import FrozenSSLTeacher

    teacher = FrozenSSLTeacher(random_hf_model("hubert"))
    wavs, wav_lens = padded_batch()
    expected, expected_lens = teacher(wavs, wav_lens)
    teacher.compile_model(name="teacher", backend="eager")
    hidden, frame_lens = teacher(wavs, wav_lens, num_layers=2)
    assert is_compiled(teacher.model, "extract_features")
    assert not hidden.is_inference()
    torch.testing.assert_close(hidden, expected[:3])
    assert torch.equal(frame_lens, expected_lens)
