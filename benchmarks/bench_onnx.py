"""CPU latency: onnxruntime vs PyTorch at 1 and 2 threads, three student shapes.

Models (random weights: only shapes matter for timing), each exported with
``speechbrain_skill.export.onnx.export_onnx``:

- teacher shape: our student with WavLM Base+ shapes, unpruned (12 layers);
- student 0.75: the same materialised at ~0.75 sparsity (dims as in
  ``bench_student_inference.py``: conv channels halved, 5 of 12 heads, FFN
  width solved for the target);
- DistilHuBERT shape: HuBERT Base shapes, 2 layers.

Batch 1, one utterance (``--audio``, e.g. a LibriSpeech file, or ``--seconds``
of noise). Every repeat runs every (model, threads, backend) once, interleaved,
so load changes on a shared machine hit all alike. Reports medians and the
onnxruntime / PyTorch speed ratio, with the load average before and after.

Usage::

    python benchmarks/bench_onnx.py --audio /path/to/utt.flac --repeats 7
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch
from bench_student_inference import solve_ffn_width

from speechbrain_skill.data.audio import read_audio
from speechbrain_skill.export.onnx import OnnxStudent, export_onnx, onnx_session
from speechbrain_skill.lobes.student import (
    PrunableSSLEncoder,
    num_params,
    student_config_from_hf,
)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio", default=None, help="audio file (real speech)")
    parser.add_argument("--seconds", type=float, default=4.0, help="without --audio")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", default=None, help="write the results here")
    return parser.parse_args()


def build_models():
    from transformers import HubertConfig, WavLMConfig

    torch.manual_seed(0)
    teacher = PrunableSSLEncoder(
        student_config_from_hf(WavLMConfig(layerdrop=0.0))
    ).eval()
    _, _, masks = solve_ffn_width(teacher, 256, 5, 0.75)
    pruned = teacher.prune(masks).eval()
    distil = PrunableSSLEncoder(
        student_config_from_hf(HubertConfig(layerdrop=0.0), num_layers=2)
    ).eval()
    return {
        "teacher shape (WavLM Base+)": teacher,
        "student 0.75": pruned,
        "DistilHuBERT shape": distil,
    }


def main():
    args = parse_args()
    if args.audio:
        wav = read_audio(args.audio).unsqueeze(0)
    else:
        wav = 0.1 * torch.randn(1, int(args.seconds * 16000))
    lengths = torch.tensor([wav.shape[1]])
    feeds = {"wavs": wav.numpy(), "wav_lengths": lengths.numpy()}
    load_before = os.getloadavg()
    models = build_models()
    folder = tempfile.mkdtemp()
    runners = {}
    for name, model in models.items():
        path = export_onnx(model, os.path.join(folder, f"{len(runners)}.onnx"))
        wrapped = OnnxStudent(model)
        for threads in args.threads:
            session = onnx_session(path, threads=threads)

            def run_torch(threads=threads, wrapped=wrapped):
                torch.set_num_threads(threads)
                with torch.inference_mode():
                    wrapped(wav, lengths)

            def run_onnx(session=session):
                session.run(None, feeds)

            runners[(name, threads, "pytorch")] = run_torch
            runners[(name, threads, "onnxruntime")] = run_onnx
    times = {key: [] for key in runners}
    for run in runners.values():  # warm-up
        run()
    for _ in range(args.repeats):
        for key, run in runners.items():
            start = time.perf_counter()
            run()
            times[key].append(time.perf_counter() - start)
    info = dict(
        torch=torch.__version__,
        onnxruntime=__import__("onnxruntime").__version__,
        cpu_count=os.cpu_count(),
        audio=args.audio or f"{args.seconds} s of noise",
        audio_seconds=wav.shape[1] / 16000,
        repeats=args.repeats,
        load_average_before=load_before,
        load_average_after=os.getloadavg(),
        command=" ".join(["python", *sys.argv]),
    )
    print(json.dumps(info))
    print("| model | params | threads | PyTorch median s | onnxruntime median s "
          "| onnxruntime speed-up |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    rows = []
    for name, model in models.items():
        for threads in args.threads:
            torch_s = statistics.median(times[(name, threads, "pytorch")])
            ort_s = statistics.median(times[(name, threads, "onnxruntime")])
            rows.append(dict(model=name, params=num_params(model), threads=threads,
                             pytorch_s=torch_s, onnxruntime_s=ort_s))  # fmt: skip
            print(
                f"| {name} | {num_params(model):,} | {threads} | {torch_s:.3f} "
                f"| {ort_s:.3f} | {torch_s / ort_s:.2f}x |"
            )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(dict(info=info, rows=rows), handle, indent=2)


if __name__ == "__main__":
    main()
