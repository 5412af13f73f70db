"""Exports of every student kind: Hugging Face compact and stock, SpeechBrain, ONNX.

Each export is loaded the way its users load it (``AutoModel``, SpeechBrain's
own HF lobes and ``WeightedSSLModel``, ``from_hparams`` in a fresh interpreter,
onnxruntime) and must reproduce the student's hidden states.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from student_helpers import padded_batch, random_hf_model
from transformers import AutoModel

from speechbrain_skill.export.exporter import export_student
from speechbrain_skill.export.hf_compact import save_hf_compact
from speechbrain_skill.export.hf_stock import save_hf_stock, stock_export_problems
from speechbrain_skill.export.onnx import export_onnx, onnx_session, run_onnx
from speechbrain_skill.lobes.frames import relative_to_absolute
from speechbrain_skill.lobes.hf_ssl import TeacherLoadError
from speechbrain_skill.lobes.student import PrunableSSLEncoder, save_student
from speechbrain_skill.lobes.upstream import load_upstream_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = ("pruned_wavlm", "pruned_hubert", "pruned_wav2vec2", "distilhubert")


def _planted_masks(student, soft_last_conv=False):
    """Heads, FFN units, whole blocks and conv channels (last layer too) removed."""
    config = student.config
    masks = {name: [None] * config.num_layers for name in ("heads", "ffn_units")}
    masks["attention_layer"] = [None] * config.num_layers
    masks["ffn_layer"] = [None] * config.num_layers
    masks["heads"][0] = torch.tensor([1.0, 0.0, 0.6, 1.0])
    masks["heads"][1] = torch.zeros(4)  # a layer with no head left
    masks["ffn_units"][0] = (torch.arange(64) % 3 != 0).float()
    masks["ffn_units"][1] = (torch.arange(64) < 5).float() * 0.8
    masks["attention_layer"][2] = torch.zeros(1)
    masks["ffn_layer"][3] = torch.zeros(1)
    last = (torch.arange(16) % 4 != 1).float()
    if soft_last_conv:
        last = last * 0.7
    masks["conv"] = [None, (torch.arange(16) < 11).float(), None, None, None, None]
    masks["conv"].append(last)
    return masks


def make_student(kind, soft_last_conv=False):
    model_type = kind.split("_")[-1] if kind != "distilhubert" else "hubert"
    hf_model = random_hf_model(model_type, seed=3)
    if kind == "distilhubert":
        return PrunableSSLEncoder.from_hf(hf_model, num_layers=2)
    student = PrunableSSLEncoder.from_hf(hf_model)
    with torch.no_grad():  # non-trivial norms, so a misplaced weight shows
        for name, param in student.named_parameters():
            if "norm" in name:
                param.add_(0.1 * torch.randn_like(param))
    pruned = student.prune(_planted_masks(student, soft_last_conv))
    if kind == "pruned_wav2vec2":
        pruned.config = pruned.config.with_updates(normalize_waveform=True)
    return pruned.eval()


@pytest.fixture(scope="module", params=KINDS)
def student(request):
    return request.param, make_student(request.param)


def _attention_mask(wavs, wav_lens):
    lengths = relative_to_absolute(wav_lens, wavs.shape[1])
    return (torch.arange(wavs.shape[1]) < lengths[:, None]).long()


def _real_frames_close(hidden, reference, frame_lens, atol):
    assert hidden.shape == reference.shape
    for row, count in enumerate(frame_lens.tolist()):
        diff = (hidden[:, row, :count] - reference[:, row, :count]).abs().max()
        assert diff <= atol, f"utterance {row}: max abs diff {float(diff):.2e}"


def test_students_are_really_pruned():
    pruned = make_student("pruned_wavlm")
    config = pruned.config
    assert config.attention_heads[:2] == [[0, 2, 3], []]
    assert config.attention_present[2] is False and config.ffn_present[3] is False
    assert config.conv_channels[1] == 11 and config.conv_channels[-1] == 12
    assert config.ffn_dims[:2] == [42, 5]


def test_compact_export_equals_the_student_everywhere(student, tmp_path):
    kind, model = student
    folder = save_hf_compact(model, tmp_path / "hf")
    hf_model, info = AutoModel.from_pretrained(
        folder, trust_remote_code=True, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    wavs, wav_lens = padded_batch()
    with torch.no_grad():
        ours, _ = model(wavs, wav_lens)
        out = hf_model.eval()(
            wavs,
            attention_mask=_attention_mask(wavs, wav_lens),
            output_hidden_states=True,
        )
    assert len(out.hidden_states) == model.config.num_layers + 1
    # The same layer code: equal on every frame, padding included.
    assert (torch.stack(out.hidden_states) - ours).abs().max() <= 1e-5
    assert torch.equal(out.last_hidden_state, out.hidden_states[-1])
    assert sum(p.numel() for p in hf_model.parameters()) == sum(
        p.numel() for p in model.parameters()
    )


def test_compact_export_loads_without_this_package(tmp_path):
    model = make_student("pruned_wavlm")
    folder = save_hf_compact(model, tmp_path / "hf")
    wavs, wav_lens = padded_batch()
    torch.save(
        {"wavs": wavs, "mask": _attention_mask(wavs, wav_lens)}, tmp_path / "in.pt"
    )
    script = (
        "import sys, torch\n"
        "sys.modules['speechbrain_skill'] = None  # importing it now fails\n"
        "from transformers import AutoModel\n"
        f"model = AutoModel.from_pretrained({folder!r}, trust_remote_code=True)\n"
        f"batch = torch.load({str(tmp_path / 'in.pt')!r})\n"
        "with torch.no_grad():\n"
        "    out = model(batch['wavs'], attention_mask=batch['mask'],\n"
        "                output_hidden_states=True)\n"
        f"torch.save(torch.stack(out.hidden_states), {str(tmp_path / 'out.pt')!r})\n"
    )
    env = {**os.environ, "PYTHONPATH": "", "HF_MODULES_CACHE": str(tmp_path / "cache")}
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, env=env)
    with torch.no_grad():
        ours, _ = model(wavs, wav_lens)
    assert (torch.load(tmp_path / "out.pt") - ours).abs().max() <= 1e-5


def test_stock_export_pads_with_exact_zeros(student, tmp_path):
    kind, model = student
    assert stock_export_problems(model) == []
    folder = save_hf_stock(model, tmp_path / "stock")
    hf_model = AutoModel.from_pretrained(folder).eval()
    expected = {"wavlm": "WavLMModel", "hubert": "HubertModel"}
    assert type(hf_model).__name__ == expected.get(
        model.config.model_type, "Wav2Vec2Model"
    )
    wavs, wav_lens = padded_batch()
    inputs = wavs
    if model.config.normalize_waveform:  # the stock preprocessor normalises
        from transformers import AutoFeatureExtractor

        extractor = AutoFeatureExtractor.from_pretrained(folder)
        assert extractor.do_normalize
        lengths = relative_to_absolute(wav_lens, wavs.shape[1])
        inputs = extractor(
            [w[:n].numpy() for w, n in zip(wavs, lengths)],
            sampling_rate=16000,
            padding=True,
            return_tensors="pt",
        ).input_values
    with torch.no_grad():
        ours, frame_lens = model(wavs, wav_lens)
        out = hf_model(
            inputs,
            attention_mask=_attention_mask(wavs, wav_lens),
            output_hidden_states=True,
        )
    _real_frames_close(torch.stack(out.hidden_states), ours, frame_lens, 1e-5)
    if kind == "pruned_wavlm":
        layer0 = hf_model.encoder.layers[0].attention
        assert layer0.q_proj.weight[8:16].abs().sum() == 0  # head 1 removed
        assert hf_model.encoder.layers[1].attention.v_proj.weight.abs().sum() == 0
        assert hf_model.config.conv_dim[-1] == 12  # per-layer conv_dim, no padding


def test_stock_export_refuses_soft_last_conv_values(tmp_path):
    model = make_student("pruned_hubert", soft_last_conv=True)
    problems = stock_export_problems(model)
    assert len(problems) == 1 and "channel_scale" in problems[0]
    with pytest.raises(ValueError, match="channel_scale"):
        save_hf_stock(model, tmp_path / "stock")
    folder = save_student(model, tmp_path / "student")
    summary = export_student(folder, formats=["hf", "hf_stock"])
    assert "hf_stock" not in summary["folders"]
    assert summary["refused"]["hf_stock"] == problems
    card = (tmp_path / "student" / "hf" / "README.md").read_text()
    assert "No stock Hugging Face export" in card and "channel_scale" in card
    assert summary["parity"]["hf"] <= 1e-5
    # Asked for the refused folder, the loader gives the reason, not a hub error.
    with pytest.raises(TeacherLoadError) as error:
        load_upstream_model(tmp_path / "student" / "hf_stock")
    message = str(error.value)
    assert "No hf_stock export was written" in message and "channel_scale" in message
    assert "hub" not in message and f"hf ({tmp_path / 'student' / 'hf'})" in message
    # A format that was not asked for is named as such.
    with pytest.raises(TeacherLoadError, match="not among the formats exported"):
        load_upstream_model(tmp_path / "student" / "onnx")


def test_speechbrain_hf_lobes_load_both_exports(tmp_path):
    from speechbrain.integrations.huggingface.wav2vec2 import Wav2Vec2
    from speechbrain.integrations.huggingface.wavlm import WavLM
    from speechbrain.integrations.huggingface.weighted_ssl import WeightedSSLModel

    model = make_student("pruned_wavlm")
    stock = save_hf_stock(model, tmp_path / "stock")
    compact = save_hf_compact(model, tmp_path / "hf")
    wavs, wav_lens = padded_batch()
    with torch.no_grad():
        ours, frame_lens = model(wavs, wav_lens)
        ours_full, _ = model(wavs)
    lobes = [
        WavLM(
            stock, save_path=str(tmp_path / "sb"), output_all_hiddens=True, freeze=True
        ),
        Wav2Vec2(
            compact,
            save_path=str(tmp_path / "sb"),
            output_all_hiddens=True,
            freeze=True,
            trust_remote_code=True,
        ),
    ]
    for lobe in lobes:
        _real_frames_close(lobe.eval()(wavs, wav_lens), ours, frame_lens, 1e-5)
    # MP3S's upstream: zero-initialised layer weights give the mean hidden state.
    for kwargs in ({"hub": stock}, {"hub": compact, "trust_remote_code": True}):
        weighted = WeightedSSLModel(
            save_path=str(tmp_path / "sb"), freeze=True, **kwargs
        )
        assert weighted.num_layers == ours.shape[0]
        with torch.no_grad():
            features = weighted(wavs)
        assert (features - ours_full.mean(dim=0)).abs().max() <= 1e-5


def test_onnx_runtime_matches_the_student_on_three_lengths(student, tmp_path):
    kind, model = student
    path = export_onnx(model, tmp_path / "student.onnx")
    session = onnx_session(path, threads=1)
    wavs, _ = padded_batch(num_samples=20000)
    lengths = torch.tensor([20000, 13000, 7100])
    wavs = wavs * (torch.arange(20000) < lengths[:, None])
    hidden, frames = run_onnx(session, wavs, lengths)
    with torch.no_grad():
        ours, frame_lens = model(wavs, lengths / 20000)
    assert frames.tolist() == frame_lens.tolist()
    _real_frames_close(hidden, ours, frame_lens, 1e-4)
    # Another batch size and length (the export traced 2 x 16000 samples).
    single, _ = run_onnx(session, wavs[2:, :7100], lengths[2:])
    with torch.no_grad():
        ours_single, single_lens = model(wavs[2:, :7100])
    _real_frames_close(single, ours_single, single_lens, 1e-4)


def test_from_hparams_in_a_fresh_interpreter_encodes_a_file(tmp_path):
    model = make_student("pruned_wavlm")
    folder = save_student(model, tmp_path / "student")
    summary = export_student(folder, formats=["speechbrain"])
    assert summary["parity"]["speechbrain"] <= 1e-5
    audio = 0.1 * np.random.default_rng(0).standard_normal(12345).astype("float32")
    sf.write(tmp_path / "utt.flac", audio, 16000)
    script = (
        "import torch\n"
        "from speechbrain_skill.export.inference import SSLStudentEncoder\n"
        f"encoder = SSLStudentEncoder.from_hparams(source={folder!r})\n"
        f"hidden, lens = encoder.encode_file({str(tmp_path / 'utt.flac')!r})\n"
        f"torch.save((hidden, lens), {str(tmp_path / 'out.pt')!r})\n"
    )
    env = {**os.environ, "PYTHONPATH": REPO}
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, env=env)
    hidden, lens = torch.load(tmp_path / "out.pt")
    with torch.no_grad():
        ours, our_lens = model(
            torch.from_numpy(sf.read(tmp_path / "utt.flac")[0]).float()[None]
        )
    assert lens.tolist() == our_lens.tolist()
    assert (hidden - ours).abs().max() <= 1e-5


def test_command_exports_a_student_folder_with_cards(tmp_path):
    from speechbrain_skill.export.__main__ import main

    model = make_student("distilhubert")
    folder = save_student(model, tmp_path / "student")
    report = {"teacher": "tiny-hubert", "teacher_params": 123456, "groups": [[1], [2]],
              "student_layers": [1, 2], "sparsity_reached": 0.0,
              "command": "python train.py x.yaml",
              "training": {"method": "distillation", "data": ["train-clean-100"],
                           "steps": {"final": 10}}}  # fmt: skip
    (tmp_path / "student" / "report.json").write_text(json.dumps(report))
    out = tmp_path / "out"
    summary = main([str(folder), "--output", str(out)])
    assert set(summary["folders"]) == {
        "student",
        "speechbrain",
        "hf",
        "hf_stock",
        "onnx",
    }
    assert summary["refused"] == {}
    assert max(summary["parity"].values()) <= 1e-4
    saved = json.loads((out / "export_summary.json").read_text())
    assert saved["parity"] == summary["parity"]
    for sub in ("", "hf", "hf_stock", "onnx"):
        card = (out / sub / "README.md").read_text()
        assert "teacher layers [1] -> student layer 1" in card
        assert f"| parameters | {summary['params']:,} |" in card
        assert "python train.py x.yaml" in card and "trust_remote_code=True" in card
    assert (out / "onnx" / "student.onnx").is_file()
    assert (out / "hyperparams.yaml").is_file() and (
        out / "hf_stock" / "config.json"
    ).is_file()


def _fake_module(tmp_path, name, text):
    import importlib.util

    path = tmp_path / f"{name}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(f"speechbrain_skill.{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return spec.name


def test_bundle_refuses_what_it_cannot_inline(tmp_path):
    from speechbrain_skill.export.bundle import BundleError, bundle_module

    base = _fake_module(tmp_path, "fake_base", "import math\nSCALE = math.pi\n")
    user = _fake_module(
        tmp_path,
        "fake_user",
        f"from {base} import SCALE\n\ndef f():\n    return SCALE\n",
    )
    namespace = {}
    exec(bundle_module(user), namespace)  # inlined: runs without the fake modules
    assert namespace["f"]() == pytest.approx(3.14159265)
    clash = _fake_module(
        tmp_path, "fake_clash", f"from {base} import SCALE\nSCALE = 2\n"
    )
    with pytest.raises(BundleError, match="collide"):
        bundle_module(clash)
    nested = _fake_module(
        tmp_path,
        "fake_nested",
        f"def g():\n    from {base} import SCALE\n    return SCALE\n",
    )
    with pytest.raises(BundleError, match="inside a function"):
        bundle_module(nested)
    for name in ("fake_base", "fake_user", "fake_clash", "fake_nested"):
        sys.modules.pop(f"speechbrain_skill.{name}")


def test_macs_count_projections_and_attention_products_of_each_head():
    from speechbrain_skill.export.card import macs_per_second
    from speechbrain_skill.lobes.student import StudentConfig

    config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16)
    full = macs_per_second(PrunableSSLEncoder(config))
    one_head_less = macs_per_second(
        PrunableSSLEncoder(config.with_updates(attention_heads=[[0, 1, 3]]))
    )
    frames, hidden, head_dim = 49, 32, 8  # 1 s of audio -> 49 frames
    projections = 4 * frames * hidden * head_dim  # q, k, v rows; output columns
    products = 2 * frames * frames * head_dim  # scores and weighted values
    assert full - one_head_less == projections + products


def test_int8_onnx_export_quantizes_every_weight_matmul_and_keeps_convs(tmp_path):
    model = make_student("pruned_wavlm")
    folder = save_student(model, tmp_path / "student")
    summary = export_student(folder, tmp_path / "out", formats=["onnx_int8"])
    info = summary["int8"]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv1d)]
    # One int8 product per Linear of the student; convolutions stay fp32.
    int8_products = sum(
        n for op, n in info["int8_ops"].items() if op != "DynamicQuantizeLinear"
    )
    assert int8_products == len(linears)
    assert info["fp32_ops"]["Conv"] == len(convs)
    assert info["fused"].get("SkipLayerNormalization", 0) > 0
    cosines = info["layer_cosines"]
    assert len(cosines) == model.config.num_layers + 1
    assert min(cosines) > 0.99
    assert 0 < summary["parity"]["onnx_int8"] < 1.0
    card = (tmp_path / "out" / "onnx_int8" / "README.md").read_text()
    assert "int8 for CPUs" in card and "onnx_int8/student.onnx" in card
    assert (
        json.loads((tmp_path / "out" / "onnx_int8" / "config.json").read_text())[
            "int8"
        ]["fp32_ops"]
        == info["fp32_ops"]
    )
    assert not (tmp_path / "out" / "onnx_int8" / "fp32.onnx").exists()
