"""Export one student to every format, check each against it, write the cards.

:func:`export_student` is the recipe's export stage and the command line
(``python -m speechbrain_skill.export <student folder>``). Layout of the
output folder (by default the student folder itself)::

    config.json, model.safetensors   our format (load_student)
    hyperparams.yaml                 SpeechBrain interface (SSLStudentEncoder)
    hf/                              Hugging Face, compact, custom code
    hf_stock/                        Hugging Face, stock class, padded (when exact)
    onnx/student.onnx                ONNX
    README.md (in each folder)       model card
    export_summary.json              folders, refusals, parity, size, MACs

Each written format is loaded back and compared with the student on one
padded batch of three lengths; the differences go into the summary and cards.
"""

import json
import logging
import shlex
from pathlib import Path

import torch

from speechbrain_skill.export.card import macs_per_second, model_card, read_report
from speechbrain_skill.export.folder import write_model_folder
from speechbrain_skill.export.parity import (
    PARITY_LENGTHS,
    max_diff_on_real_frames,
    parity_batch,
)
from speechbrain_skill.lobes.student import load_student, num_params, save_student
from speechbrain_skill.training.modules import unwrap

logger = logging.getLogger(__name__)

FORMATS = ("speechbrain", "hf", "hf_stock", "onnx")
# On request only (``--formats ... onnx_int8``): CPU deployment, approximate.
OPTIONAL_FORMATS = ("onnx_int8",)
SUBFOLDERS = {
    "hf": "hf",
    "hf_stock": "hf_stock",
    "onnx": "onnx",
    "onnx_int8": "onnx_int8",
}
SUMMARY_NAME = "export_summary.json"


def missing_export_reason(path):
    """Why an export folder that a user asks for was not written, or None.

    Reads the ``export_summary.json`` next to it: the format was refused
    (with the reason), or was not among the formats exported.

    Arguments
    ---------
    path : str or os.PathLike
        A format folder of an export (e.g. ``results/quickstart/student/hf_stock``).

    Returns
    -------
    str or None
        None when the folder exists or nothing says it should.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> summary = {"folders": {"student": str(folder), "hf": str(folder / "hf")},
    ...            "refused": {"hf_stock": ["the last conv layer is soft"]}}
    >>> _ = (folder / SUMMARY_NAME).write_text(json.dumps(summary))
    >>> print(missing_export_reason(folder / "hf_stock"))
    ... # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
    No hf_stock export was written for ...: it was refused (the last conv
    layer is soft). This export has: student (...), hf (...hf).
    >>> missing_export_reason(folder / "hf") is None  # listed: not ours to judge
    True
    """
    path = Path(path)
    summary_path = path.parent / SUMMARY_NAME
    if path.exists() or not summary_path.is_file():
        return None
    formats = {folder: name for name, folder in SUBFOLDERS.items()}
    if path.name not in formats:
        return None
    summary = json.loads(summary_path.read_text())
    name = formats[path.name]
    if name in summary.get("folders", {}):
        return None
    refused = summary.get("refused", {}).get(name)
    why = (
        f"it was refused ({'; '.join(refused)})"
        if refused
        else "it was not among the formats exported (--formats)"
    )
    written = ", ".join(f"{key} ({value})" for key, value in summary["folders"].items())
    return (
        f"No {name} export was written for {path.parent}: {why}. "
        f"This export has: {written}."
    )


def _hf_hidden_states(folder, wavs, wav_lengths, trust_remote_code=False):
    from transformers import AutoModel

    from speechbrain_skill.lobes.hf_ssl import no_weight_loading_bar

    with no_weight_loading_bar():
        model = AutoModel.from_pretrained(
            folder, trust_remote_code=trust_remote_code
        ).eval()
    mask = (torch.arange(wavs.shape[1]) < wav_lengths[:, None]).long()
    with torch.no_grad():
        out = model(wavs, attention_mask=mask, output_hidden_states=True)
    return torch.stack(out.hidden_states)


def _export_onnx(student, folder, summary, check):
    """ONNX export; its parity-batch output when checked, None when not or refused."""
    try:
        from speechbrain_skill.export.onnx import (
            ONNX_NAME,
            export_onnx,
            onnx_session,
            onnx_signature,
            run_onnx,
        )

        folder.mkdir(parents=True, exist_ok=True)
        export_onnx(student, folder / ONNX_NAME)
        session = onnx_session(folder / ONNX_NAME) if check else None
    except ImportError as err:
        reason = f"{err}; install the extra: pip install speechbrain_skill[export]"
        summary["refused"]["onnx"] = [reason]
        logger.warning("No ONNX export: %s", reason)
        return None
    write_model_folder(folder, onnx_signature(student.config))
    summary["folders"]["onnx"] = str(folder)
    if not check:
        return None
    return run_onnx(session, *parity_batch())[0]


def _export_onnx_int8(student, folder, summary, check):
    """int8 ONNX export (fused, int8 weight matmuls); its parity-batch output."""
    try:
        from speechbrain_skill.export.int8 import quantize_onnx
        from speechbrain_skill.export.onnx import (
            ONNX_NAME,
            export_onnx,
            onnx_session,
            onnx_signature,
            run_onnx,
        )

        folder.mkdir(parents=True, exist_ok=True)
        fp32 = folder / "fp32.onnx"
        export_onnx(student, fp32)
        info = quantize_onnx(fp32, folder / ONNX_NAME)
        fp32.unlink()
        session = onnx_session(folder / ONNX_NAME) if check else None
    except ImportError as err:
        reason = f"{err}; install the extra: pip install speechbrain_skill[export]"
        summary["refused"]["onnx_int8"] = [reason]
        logger.warning("No int8 ONNX export: %s", reason)
        return None
    write_model_folder(folder, {**onnx_signature(student.config), "int8": info})
    summary["folders"]["onnx_int8"] = str(folder)
    summary["int8"] = info
    if not check:
        return None
    return run_onnx(session, *parity_batch())


def _export_command(source, output, formats):
    parts = ["python", "-m", "speechbrain_skill.export", str(source)]
    if output is not None:
        parts += ["--output", str(output)]
    parts += ["--formats", *formats]
    return shlex.join(parts)


def export_student(
    source, output=None, formats=FORMATS, check=True, student=None, report=None
):
    """Export a saved student to the given formats.

    Arguments
    ---------
    source : str or os.PathLike
        A student folder (:func:`~speechbrain_skill.lobes.student.save_student`),
        e.g. a recipe's ``export_folder``; its ``report.json`` feeds the card.
    output : str or os.PathLike, optional
        Output folder (default: ``source``).
    formats : sequence of str
        Any of ``speechbrain``, ``hf``, ``hf_stock``, ``onnx`` and, on
        request only, ``onnx_int8`` (:mod:`speechbrain_skill.export.int8`;
        its parity entry is the largest difference, and the summary's
        ``int8`` entry holds the per-layer cosines to the student).
    check : bool
        Load each export back and measure its difference to the student.
    student : PrunableSSLEncoder, optional
        The student saved in ``source``, in memory; None: loaded from it.
    report : dict, optional
        Its ``report.json`` content, in memory; None: read from ``source``.

    Returns
    -------
    dict
        The export summary (also written as ``export_summary.json``).

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_skill.lobes.student import PrunableSSLEncoder, StudentConfig
    >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16)
    >>> folder = save_student(PrunableSSLEncoder(config), tempfile.mkdtemp())
    >>> summary = export_student(folder, formats=["hf", "hf_stock"])
    >>> sorted(summary["folders"]), max(summary["parity"].values()) < 1e-5
    (['hf', 'hf_stock', 'student'], True)
    """
    from speechbrain_skill.export.hf_compact import export_problems, save_hf_compact
    from speechbrain_skill.export.hf_stock import save_hf_stock, stock_export_problems

    known = FORMATS + OPTIONAL_FORMATS
    unknown = sorted(set(formats) - set(known))
    if unknown:
        raise ValueError(f"Unknown export formats {unknown}; choose from {known}.")
    source = Path(source)
    output = Path(output) if output is not None else source
    student = unwrap(student if student is not None else load_student(source)).eval()
    problems = export_problems(student)
    if problems:
        raise ValueError(f"Cannot export {source}: " + "; ".join(problems) + ".")
    report = read_report(source) if report is None else report
    summary = {
        "source": str(source),
        "command": _export_command(
            source, None if output == source else output, formats
        ),
        "params": num_params(student),
        "macs_per_second": macs_per_second(student),
        "folders": {"student": str(output)},
        "refused": {},
        "parity": {},
        "parity_lengths": list(PARITY_LENGTHS),
    }
    if output != source:
        save_student(student, output)
    wavs, wav_lengths = parity_batch()
    with torch.no_grad():
        reference, frame_lens = student(wavs, wav_lengths / wavs.shape[1])

    if "speechbrain" in formats:
        from speechbrain_skill.export.inference import (
            HPARAMS_NAME,
            SSLStudentEncoder,
            hyperparams_yaml,
        )

        write_model_folder(
            output, files={HPARAMS_NAME: hyperparams_yaml(student.config)}
        )
        summary["folders"]["speechbrain"] = str(output)
        if check:
            encoder = SSLStudentEncoder.from_hparams(source=output)
            hidden, _ = encoder.encode_batch(wavs, wav_lengths / wavs.shape[1])
            summary["parity"]["speechbrain"] = max_diff_on_real_frames(
                hidden, reference, frame_lens
            )
    if "hf" in formats:
        folder = output / SUBFOLDERS["hf"]
        save_hf_compact(student, folder)
        summary["folders"]["hf"] = str(folder)
        if check:
            hidden = _hf_hidden_states(folder, wavs, wav_lengths, True)
            summary["parity"]["hf"] = max_diff_on_real_frames(
                hidden, reference, frame_lens
            )
    if "hf_stock" in formats:
        refusal = stock_export_problems(student)
        if refusal:
            summary["refused"]["hf_stock"] = refusal
            written = "hf" in summary["folders"]
            logger.warning(
                "No stock Hugging Face export%s: %s.",
                " (hf/ is written: it loads with trust_remote_code=True)"
                if written
                else "",
                "; ".join(refusal),
            )
        else:
            folder = output / SUBFOLDERS["hf_stock"]
            save_hf_stock(student, folder)
            summary["folders"]["hf_stock"] = str(folder)
            if check:
                normalized = wavs
                if student.config.normalize_waveform:
                    from speechbrain_skill.lobes.frames import normalize_waveforms

                    normalized = normalize_waveforms(wavs, wav_lengths)
                hidden = _hf_hidden_states(folder, normalized, wav_lengths)
                summary["parity"]["hf_stock"] = max_diff_on_real_frames(
                    hidden, reference, frame_lens
                )
    if "onnx" in formats:
        hidden = _export_onnx(student, output / SUBFOLDERS["onnx"], summary, check)
        if hidden is not None:
            summary["parity"]["onnx"] = max_diff_on_real_frames(
                hidden, reference, frame_lens
            )

    if "onnx_int8" in formats:
        folder = output / SUBFOLDERS["onnx_int8"]
        result = _export_onnx_int8(student, folder, summary, check)
        if result is not None:
            from speechbrain_skill.export.int8 import hidden_state_cosines

            hidden, frames = result
            summary["parity"]["onnx_int8"] = max_diff_on_real_frames(
                hidden, reference, frame_lens
            )
            summary["int8"]["layer_cosines"] = [
                round(c, 6) for c in hidden_state_cosines(hidden, reference, frames)
            ]

    card = model_card(student, summary, report)
    for folder in summary["folders"].values():
        write_model_folder(folder, readme=card)
    write_model_folder(
        output, files={SUMMARY_NAME: json.dumps(summary, indent=2) + "\n"}
    )
    return summary
