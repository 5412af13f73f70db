"""Model card (``README.md``) of an exported student, and its compute cost.

The card states what the student is (method, teacher, layer groups, student
layers, size, MACs per second of audio, sparsity reached vs target, data and
steps, the command that made it), how each export loads, and the parity
measured when it was exported.
"""

import copy
import json

import torch

from speechbrain_skill.training.modules import unwrap

SECOND = 16000


def macs_per_second(student, seconds=1.0):
    """Multiply-accumulates of one forward pass on ``seconds`` of audio, per second.

    Convolutions, linear layers and the attention matrix products are
    counted (``torch.utils.flop_counter``, attention on its math path);
    norms, activations and softmax are not.

    Arguments
    ---------
    student : PrunableSSLEncoder
        The model.
    seconds : float
        Length of the input.

    Returns
    -------
    int

    Example
    -------
    >>> from speechbrain_skill.lobes.student import PrunableSSLEncoder, StudentConfig
    >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16)
    >>> big = macs_per_second(PrunableSSLEncoder(config))
    >>> small = macs_per_second(PrunableSSLEncoder(config.with_updates(ffn_dims=[32])))
    >>> big - small == 49 * 2 * 32 * 32  # 49 frames, two 32 x 32 halves of the FFN
    True
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    # A frozen copy: the counter's module tracker hooks any output that requires grad.
    model = copy.deepcopy(unwrap(student)).eval().requires_grad_(False)
    parameter = next(model.parameters())
    wavs = torch.zeros(1, int(seconds * SECOND), dtype=parameter.dtype)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        model(wavs.to(parameter.device))
    return int(round(counter.get_total_flops() / 2 / seconds))


def _listing(value, unknown):
    if value is None:
        return unknown
    if isinstance(value, dict):
        return ", ".join(f"{key}: {item}" for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value)
    return str(value)


def _millions(count):
    return f"{count / 1e6:.2f} M"


def _architecture_lines(config):
    lines = [
        "| layer | heads kept (original index) | FFN units | attention | FFN |",
        "|---|---|---|---|---|",
    ]
    for index in range(config.num_layers):
        heads = config.attention_heads[index]
        attention = config.attention_present[index] and len(heads) > 0
        ffn = config.ffn_present[index] and config.ffn_dims[index] > 0
        kept = f"{len(heads)}/{config.num_attention_heads}"
        lines.append(
            f"| {index + 1} | {kept + ' ' + str(list(heads)) if heads else kept} "
            f"| {config.ffn_dims[index] if ffn else 0} "
            f"| {'kept' if attention else 'removed (no head left)'} "
            f"| {'kept' if ffn else 'removed (no unit left)'} |"
        )
    return lines


def _load_section(summary):
    folders = summary["folders"]
    sections = [
        "## Loading",
        "",
        "Our format (`speechbrain_skill` installed):",
        "",
        "```python",
        "from speechbrain_skill.lobes.student import load_student",
        f'student = load_student("{folders["student"]}")',
        "hidden, frame_lens = student(wavs, wav_lens)  # SpeechBrain relative lengths",
        "```",
    ]
    if "speechbrain" in folders:
        sections += [
            "",
            "SpeechBrain inference interface (`hyperparams.yaml`):",
            "",
            "```python",
            "from speechbrain_skill.export.inference import SSLStudentEncoder",
            "encoder = SSLStudentEncoder.from_hparams("
            f'source="{folders["speechbrain"]}")',
            'hidden, frame_lens = encoder.encode_file("utterance.flac")',
            "```",
        ]
    if "hf" in folders:
        sections += [
            "",
            "Hugging Face, compact (custom code; needs only torch + transformers):",
            "",
            "```python",
            "from transformers import AutoModel",
            f'model = AutoModel.from_pretrained("{folders["hf"]}", '
            "trust_remote_code=True)",
            "out = model(wavs, attention_mask=mask, output_hidden_states=True)",
            "```",
            "",
            "SpeechBrain's HF lobes take it too: "
            "`speechbrain.integrations.huggingface.Wav2Vec2(source, save_path, "
            "output_all_hiddens=True, trust_remote_code=True)` and "
            "`WeightedSSLModel(hub, save_path, trust_remote_code=True)`.",
        ]
    if "hf_stock" in folders:
        sections += [
            "",
            "Hugging Face, stock architecture (removed parts padded with exact "
            "zeros; any tool that loads stock checkpoints, e.g. MP3S "
            "`--ssl_hub`, SpeechBrain's `WavLM` / `HuBERT` lobes):",
            "",
            "```python",
            "from transformers import AutoModel",
            f'model = AutoModel.from_pretrained("{folders["hf_stock"]}")',
            "```",
        ]
    elif "hf_stock" in summary.get("refused", {}):
        sections += [
            "",
            "No stock Hugging Face export: "
            + "; ".join(summary["refused"]["hf_stock"])
            + ".",
        ]
    if "onnx" in folders:
        sections += [
            "",
            "ONNX (onnxruntime; inputs `wavs` float32 (batch, samples), "
            "`wav_lengths` int64; outputs `hidden_states` (layers + 1, batch, "
            "frames, hidden), `frame_lengths`):",
            "",
            "```python",
            "import onnxruntime",
            f'session = onnxruntime.InferenceSession("{folders["onnx"]}/student.onnx")',
            "hidden, frame_lengths = session.run(None, "
            '{"wavs": wavs, "wav_lengths": lengths})',
            "```",
        ]
    if "onnx_int8" in folders:
        sections += [""] + _int8_lines(folders["onnx_int8"], summary.get("int8", {}))
    return sections


def _int8_lines(folder, info):
    """The card's int8 ONNX entry: what is int8, what stays fp32, fidelity."""
    int8_ops = ", ".join(
        f"{n} {op}" for op, n in sorted(info.get("int8_ops", {}).items())
    )
    fp32_ops = ", ".join(
        f"{n} {op}" for op, n in sorted(info.get("fp32_ops", {}).items())
    )
    lines = [
        "ONNX, int8 for CPUs (`onnx_int8/student.onnx`, same inputs and outputs; "
        "GELU and residual + LayerNorm fused, the matrix multiplies by a weight "
        "in int8 with dynamic uint8 activations, convolutions and attention "
        "products in fp32"
        + (f"; int8: {int8_ops}; fp32: {fp32_ops}" if int8_ops else "")
        + "). Approximate: compare its hidden states with the fp32 ONNX export "
        "on your data before relying on it.",
        "",
        "```python",
        f'session = onnxruntime.InferenceSession("{folder}/student.onnx")',
        "```",
    ]
    cosines = info.get("layer_cosines")
    if cosines:
        lines += [
            "",
            "Cosine to the student per hidden state (parity batch): "
            + ", ".join(f"{c:.4f}" for c in cosines)
            + ".",
        ]
    return lines


def model_card(student, summary, report=None):
    """The ``README.md`` text of an export.

    Arguments
    ---------
    student : PrunableSSLEncoder
        The exported student.
    summary : dict
        The export summary (folders, refusals, parity, params, MACs) of
        :func:`speechbrain_skill.export.exporter.export_student`.
    report : dict, optional
        The distillation run's ``report.json`` (teacher, groups, sparsity,
        data, steps, command); missing facts are marked unknown.

    Returns
    -------
    str

    Example
    -------
    >>> from speechbrain_skill.lobes.student import PrunableSSLEncoder, StudentConfig
    >>> student = PrunableSSLEncoder(StudentConfig.uniform("hubert", 32, 1, 4, 64, 16))
    >>> summary = {"folders": {"student": "s"}, "params": 1000, "macs_per_second": 5e6,
    ...            "refused": {}, "parity": {}, "command": "python -m x"}
    >>> card = model_card(student, summary)
    >>> "| MACs per second of audio | 5.00 M |" in card
    True
    """
    report = report or {}
    config = student.config
    unknown = "unknown (no report.json)"
    training = report.get("training") or {}
    groups = report.get("groups")
    layers = report.get("student_layers")
    if groups is not None and layers is not None:
        group_text = "; ".join(
            f"teacher layers {group} -> student layer {layer}"
            for group, layer in zip(groups, layers)
        )
    else:
        group_text = unknown
    target = report.get("target_sparsity")
    reached = report.get("sparsity_reached")
    sparsity = unknown
    if reached is not None:
        sparsity = f"{reached:.4f} reached" + (
            f" vs target {target}" if target is not None else " (no pruning target)"
        )
    teacher_params = report.get("teacher_params")
    lines = [
        f"# {training.get('experiment', 'speechbrain-skill student')}",
        "",
        f"A {config.model_type} student made by speechbrain-skill (SpeechBrain "
        f"recipes): {config.num_layers} transformer layers, width "
        f"{config.hidden_size}.",
        "",
        "| | |",
        "|---|---|",
        f"| method | {training.get('method', unknown)} |",
        f"| teacher | {report.get('teacher', unknown)}"
        + (f" ({teacher_params:,} params)" if teacher_params else "")
        + " |",
        f"| layer groups | {group_text} |",
        f"| student layers | {layers if layers is not None else unknown} |",
        f"| parameters | {summary['params']:,} |",
        f"| MACs per second of audio | {_millions(summary['macs_per_second'])} |",
        f"| sparsity | {sparsity} |",
        f"| data | {_listing(training.get('data'), unknown)} |",
        f"| steps | {_listing(training.get('steps'), unknown)} |",
        f"| training command | `{report.get('command', unknown)}` |",
        f"| export command | `{summary['command']}` |",
        "",
        "## Architecture (per layer)",
        "",
        f"Conv channels per layer: {config.conv_channels}.",
        "",
        *_architecture_lines(config),
        "",
        "Hidden states are indexed like Hugging Face `output_hidden_states`: "
        "0 is the input of the first transformer layer, i the output of layer i.",
        "",
        *_load_section(summary),
    ]
    if summary.get("parity"):
        lines += [
            "",
            "## Parity measured at export",
            "",
            "Largest absolute difference to the student over all hidden states, "
            "real frames, one batch of three lengths "
            f"({summary.get('parity_lengths')} samples):",
            "",
            "| export | max abs diff |",
            "|---|---|",
            *(
                f"| {name} | {value:.2e} |"
                for name, value in sorted(summary["parity"].items())
            ),
        ]
    return "\n".join(lines) + "\n"


def read_report(folder):
    """The ``report.json`` of a run's student folder, or None.

    Arguments
    ---------
    folder : str or os.PathLike
        Student folder.

    Returns
    -------
    dict or None

    Example
    -------
    >>> import tempfile
    >>> read_report(tempfile.mkdtemp()) is None
    True
    """
    from pathlib import Path

    path = Path(folder) / "report.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())
