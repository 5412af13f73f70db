"""int8 ONNX students on the CPU: latency against fp32 ONNX and the teacher, fidelity.

Latency (random weights: only shapes matter for time): the WavLM Base+-shape
0.75 student of bench_onnx.py exported by this project's ONNX exporter, in
these forms, every form run once per repeat, interleaved, in onnxruntime at
``--threads`` intra-op threads, on a batch of 1 x ``--seconds`` and one of
``--batch`` x ``--seconds`` (noise):

* ``fp32``: the fp32 export (the reference of the ratios);
* ``int8``: the ``onnx_int8`` export format
  (:func:`speechbrain_skill.export.int8.quantize_onnx`: fused graph, int8
  weight matmuls, convolutions and attention products in fp32);
* ``int8_unfused``: the same quantization without the fusion pass;
* ``int8_all_ops``: onnxruntime's plain ``quantize_dynamic`` with its
  defaults on the unfused graph (convolutions too: ``ConvInteger``);
* ``teacher_fp32``: the unpruned Base+-shape model's fp32 export.

Fidelity (``--student`` folder and ``--audio`` folder of real speech):
per-hidden-state cosine of the int8 export against the fp32 export over the
real frames of each utterance (batch 1, ``--files`` utterances), the mean
per layer and the smallest utterance mean.

Usage (docs/export.md has the measured output)::

    python benchmarks/bench_int8.py --repeats 5 --json int8.json \\
        --student results/quickstart/student \\
        --audio /work/shared/real_audio/librispeech/test-clean
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_onnx import build_models  # noqa: E402

from speechbrain_skill.export.int8 import (  # noqa: E402
    hidden_state_cosines,
    quantize_onnx,
)
from speechbrain_skill.export.onnx import (  # noqa: E402
    export_onnx,
    onnx_session,
    run_onnx,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-speed", action="store_true", help="fidelity only")
    parser.add_argument("--student", default=None, help="student folder (fidelity)")
    parser.add_argument("--audio", default=None, help="folder of speech .flac files")
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--json", default=None)
    return parser.parse_args(argv)


def speed_models(folder):
    """The ONNX files of every form timed (see the module docstring)."""
    import onnx
    from onnxruntime.quantization import quantize_dynamic

    models = build_models()
    fp32 = export_onnx(models["student 0.75"], os.path.join(folder, "fp32.onnx"))
    teacher = export_onnx(
        models["teacher shape (WavLM Base+)"], os.path.join(folder, "teacher.onnx")
    )
    paths = {"fp32": fp32, "int8": os.path.join(folder, "int8.onnx")}
    info = quantize_onnx(fp32, paths["int8"])
    paths["int8_unfused"] = os.path.join(folder, "int8_unfused.onnx")
    quantize_onnx(fp32, paths["int8_unfused"], fuse=False)
    paths["int8_all_ops"] = os.path.join(folder, "int8_all_ops.onnx")
    quantize_dynamic(
        fp32,
        paths["int8_all_ops"],
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    paths["teacher_fp32"] = teacher
    params = {
        "student": sum(p.numel() for p in models["student 0.75"].parameters()),
        "teacher": sum(
            p.numel() for p in models["teacher shape (WavLM Base+)"].parameters()
        ),
    }
    return paths, info, params


def time_forms(paths, batches, threads, repeats):
    """Median seconds of each (form, batch), interleaved; ratios to fp32."""
    sessions = {
        name: onnx_session(path, threads=threads) for name, path in paths.items()
    }
    feeds = {}
    for label, (batch, samples) in batches.items():
        torch.manual_seed(0)
        feeds[label] = {
            "wavs": (0.1 * torch.randn(batch, samples)).numpy(),
            "wav_lengths": torch.full((batch,), samples).numpy(),
        }
    times = {(n, b): [] for n in sessions for b in feeds}
    for key in times:  # warm-up
        sessions[key[0]].run(None, feeds[key[1]])
    for _ in range(repeats):
        for name, label in times:
            start = time.perf_counter()
            sessions[name].run(None, feeds[label])
            times[(name, label)].append(time.perf_counter() - start)
    rows = []
    for label in feeds:
        base = statistics.median(times[("fp32", label)])
        for name in sessions:
            median = statistics.median(times[(name, label)])
            rows.append(
                {
                    "batch": label,
                    "form": name,
                    "median_s": round(median, 4),
                    "speedup_vs_fp32_onnx": round(base / median, 3),
                    "runs_s": [round(t, 4) for t in times[(name, label)]],
                }
            )
    return rows


def fidelity(student_folder, audio_folder, files, folder):
    """Per-layer cosine of the int8 export against the fp32 export, real speech."""
    from speechbrain_skill.data.audio import read_audio
    from speechbrain_skill.lobes.student import load_student

    student = load_student(student_folder).eval()
    fp32 = export_onnx(student, os.path.join(folder, "student_fp32.onnx"))
    int8 = os.path.join(folder, "student_int8.onnx")
    info = quantize_onnx(fp32, int8)
    sessions = [onnx_session(fp32, threads=1), onnx_session(int8, threads=1)]
    paths = sorted(Path(audio_folder).rglob("*.flac"))[:files]
    per_file, seconds = [], 0.0
    for path in paths:
        wav = read_audio(str(path)).unsqueeze(0)
        seconds += wav.shape[1] / 16000
        lengths = torch.tensor([wav.shape[1]])
        ref, frames = run_onnx(sessions[0], wav, lengths)
        out, _ = run_onnx(sessions[1], wav, lengths)
        per_file.append(hidden_state_cosines(out, ref, frames))
    layers = list(zip(*per_file))
    return {
        "student": str(student_folder),
        "files": len(paths),
        "audio_seconds": round(seconds, 1),
        "mean_cosine_per_layer": [round(statistics.fmean(c), 5) for c in layers],
        "min_file_cosine_per_layer": [round(min(c), 5) for c in layers],
        "int8": info,
    }


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    result = {"command": " ".join(["python", *sys.argv]), "threads": args.threads}
    with tempfile.TemporaryDirectory() as folder:
        if not args.no_speed:
            paths, info, params = speed_models(folder)
            samples = int(args.seconds * 16000)
            batches = {
                f"1 x {args.seconds:g} s": (1, samples),
                f"{args.batch} x {args.seconds:g} s": (args.batch, samples),
            }
            result["load_average_before"] = os.getloadavg()
            result["speed"] = time_forms(paths, batches, args.threads, args.repeats)
            result["load_average_after"] = os.getloadavg()
            result["quantization"] = info
            result["params"] = params
            for row in result["speed"]:
                print(
                    f"{row['batch']:>10}  {row['form']:>13}  {row['median_s']:.3f} s  "
                    f"{row['speedup_vs_fp32_onnx']:.2f}x vs fp32 ONNX",
                    flush=True,
                )
        if args.student and args.audio:
            result["fidelity"] = fidelity(args.student, args.audio, args.files, folder)
            print(json.dumps(result["fidelity"], indent=1), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
