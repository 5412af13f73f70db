"""Measurements on real speech: the shipped teacher and its students on LibriSpeech.

    python benchmarks/real_speech.py --real_audio ../shared/real_audio \
        --output results/real_speech \
        --student skill=results/compare_students/skill \
        --student dphubert=results/compare_students/dphubert \
        --student distilhubert=results/compare_students/distilhubert

``--real_audio`` is a folder laid out as ``shared/real_audio`` (see its
README): ``librispeech/train-clean-100/*.flac`` (one utterance per speaker)
and ``librispeech/test-other/<speaker>/*.flac`` (10 speakers x 10). Nothing
else in the project needs it. Each ``--student NAME=RUN`` is the output folder
of a distillation run (``hyperparams.yaml``, ``student/`` with ``heads.ckpt``
and ``report.json``), e.g. from ``scripts/compare_students.sh``.

1. Layer similarity (linear CKA) and groups of the teacher on
   train-clean-100, next to the groups the SKILL run found on the built-in
   (synthetic) corpus.
2. Teacher vs students: each student, through its own prediction heads,
   against its own targets (the teacher's group means) on test-other: mean
   cosine and mean L1 (the figures of the distillation summary), and the
   same on the run's synthetic validation set for comparison.
3. Speaker identification (linear probe, :mod:`speechbrain_skill.downstream.probing`)
   on test-other: per speaker, the first 5 utterances fit the probe, the
   last 5 score it; teacher, students, the randomly initialised teacher and
   MFCCs.

Writes ``real_speech.json``, ``real_speech.md`` and the layer-analysis
folder to ``--output``.
"""

import argparse
import io
import json
import os
import re
import time
from pathlib import Path

import ruamel.yaml
import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_skill.data.dataio import make_audio_dataloader
from speechbrain_skill.data.manifests import (
    audio_folder_manifest,
    read_manifest,
    write_manifest,
)
from speechbrain_skill.distillation.losses import target_fit
from speechbrain_skill.distillation.targets import align_frames, group_targets
from speechbrain_skill.downstream.probing import run_probes
from speechbrain_skill.layer_groups.analysis import run_layer_analysis
from speechbrain_skill.lobes.frames import lengths_to_mask
from speechbrain_skill.lobes.student import load_student
from speechbrain_skill.lobes.teacher import FrozenSSLTeacher

TEACHER = "builtin:tiny-wavlm"
PROBE_TRAIN_PER_SPEAKER = 5


def speaker_split(manifest, train_csv, test_csv, per_speaker):
    """Split a manifest per speaker: the first utterances fit, the rest score."""
    rows = sorted(read_manifest(manifest), key=lambda r: r["ID"])
    header = ["ID", "duration", "wav", "spk_id"]
    seen, train, test = {}, [], []
    for row in rows:
        index = seen.get(row["spk_id"], 0)
        seen[row["spk_id"]] = index + 1
        (train if index < per_speaker else test).append([row[h] for h in header])
    write_manifest(train_csv, header, train)
    write_manifest(test_csv, header, test)
    return len(seen), len(train), len(test)


OBJECT_TAGS = ("!new:", "!name:", "!apply:", "!applyref:")
# "make_heads" is the name runs before the rename to "heads" saved.
NEEDED_OBJECTS = ("heads", "make_heads", "distill_loss")
REFERENCE = re.compile(r"<([A-Za-z_]\w*)")


def _tag(node):
    """The tag of a composed yaml node as a string."""
    return str(getattr(node.tag, "value", node.tag) or "")


def _nodes(node, seen=None):
    """``node`` and every node below it (an alias is the node it names)."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return
    seen.add(id(node))
    yield node
    if isinstance(node.value, list):
        for item in node.value:
            for child in item if isinstance(item, tuple) else (item,):
                yield from _nodes(child, seen)


def run_hparams(path):
    """The heads and loss of a run's saved ``hyperparams.yaml``.

    Only those two objects are built (plus the plain values they may refer
    to), so that objects of other stages, possibly from an older version of
    the package, are never imported. The selection works on the composed
    yaml graph, not on its lines: an alias (``*id012``) in a kept entry
    stays bound to its anchor, wherever that was written.
    """
    yaml = ruamel.yaml.YAML()
    root = yaml.compose(Path(path).read_text(encoding="utf-8"))
    kept = {}
    for key, value in root.value:
        nodes = list(_nodes(value))
        holds_object = any(_tag(node).startswith(OBJECT_TAGS) for node in nodes)
        if key.value in NEEDED_OBJECTS or not holds_object:
            refs = {
                name
                for node in nodes
                if _tag(node).startswith(("!ref", "!copy"))
                for name in REFERENCE.findall(str(node.value))
            }
            kept[key.value] = refs
    # A plain value that refers to a left-out entry goes too (until none does).
    while True:
        broken = [k for k, refs in kept.items() if not refs <= kept.keys()]
        if not broken:
            break
        for key in broken:
            del kept[key]
    root.value = [(key, value) for key, value in root.value if key.value in kept]
    text = io.StringIO()
    yaml.serialize(root, text)
    return load_hyperpyyaml(text.getvalue())


def load_run(run_dir):
    """Student, heads, loss, groups and student layers of a distillation run."""
    run_dir = Path(run_dir)
    hparams = run_hparams(run_dir / "hyperparams.yaml")
    student_dir = run_dir / "student"
    report = json.loads((student_dir / "report.json").read_text())
    student = load_student(student_dir).eval()
    hidden_size = FrozenSSLTeacher(report["teacher"]).config.hidden_size
    make_heads = hparams.get("heads") or hparams["make_heads"]
    heads = make_heads(student_layers=report["student_layers"], input_dim=hidden_size)
    heads.load_state_dict(torch.load(student_dir / "heads.ckpt", map_location="cpu"))
    return dict(
        student_dir=str(student_dir),
        student=student,
        heads=heads.eval(),
        loss=hparams["distill_loss"],
        groups=report["groups"],
        student_params=report["student_params"],
        valid_csv=hparams.get("valid_csv"),
    )


@torch.no_grad()
def feature_distance(run, teacher, manifest):
    """Mean cosine / L1 of a student's predictions to its targets over a manifest."""
    sums, batches = {}, 0
    for batch in make_audio_dataloader(manifest, batch_size=4):
        wavs, wav_lens = batch.sig
        hidden, frame_lens = teacher(wavs, wav_lens)
        targets = group_targets(hidden, run["groups"])
        student_hidden, _ = run["student"](wavs, wav_lens)
        predictions, targets = align_frames(run["heads"](student_hidden), targets)
        mask = lengths_to_mask(frame_lens, predictions.shape[2])
        _, parts = run["loss"](predictions.float(), targets.float(), mask)
        for key, value in target_fit(parts).items():
            sums[key] = sums.get(key, 0.0) + float(value)
        batches += 1
    return {key: round(value / batches, 4) for key, value in sums.items()}


def main(argv=None):
    """Run the three measurements and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real_audio", required=True, help="shared/real_audio")
    parser.add_argument("--output", default="results/real_speech")
    parser.add_argument("--teacher", default=TEACHER)
    parser.add_argument(
        "--student", action="append", default=[], help="NAME=RUN_FOLDER (repeat)"
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()
    output = Path(args.output)
    speech = Path(args.real_audio) / "librispeech"
    calibration = output / "train-clean-100.csv"
    audio_folder_manifest(speech / "train-clean-100", calibration)
    audio_folder_manifest(speech / "test-other", output / "test-other.csv")
    num_speakers, num_fit, num_score = speaker_split(
        output / "test-other.csv",
        output / "probe_fit.csv",
        output / "probe_score.csv",
        PROBE_TRAIN_PER_SPEAKER,
    )
    runs = {}
    for spec in args.student:
        name, _, run_dir = spec.partition("=")
        runs[name] = load_run(run_dir)
    results = dict(
        teacher=args.teacher,
        real_audio=os.path.abspath(args.real_audio),
        threads=args.threads,
        load_average_start=os.getloadavg(),
    )

    # 1. Layer similarity and groups of the teacher on real speech.
    teacher = FrozenSSLTeacher(args.teacher)
    analysis = run_layer_analysis(
        teacher,
        make_audio_dataloader(str(calibration), batch_size=8),
        output / "layer_analysis",
        k=4,
        teacher_name=f"{args.teacher} on LibriSpeech train-clean-100",
        progress=False,
    )
    results["layer_analysis"] = dict(
        utterances=analysis.stats.num_utterances,
        frames=analysis.stats.num_frames_used,
        groups_real_speech=analysis.groups,
        groups_builtin_corpus={
            name: run["groups"] for name, run in runs.items() if name == "skill"
        },
        similarity=[[round(v, 3) for v in row] for row in analysis.similarity],
    )

    # 2. Teacher vs students: fit to the targets on real and synthetic speech.
    results["feature_distance"] = {}
    for name, run in runs.items():
        entry = {
            "test-other": feature_distance(run, teacher, output / "test-other.csv")
        }
        if run["valid_csv"] and Path(run["valid_csv"]).is_file():
            entry["builtin dev"] = feature_distance(run, teacher, run["valid_csv"])
        entry["student_params"] = run["student_params"]
        results["feature_distance"][name] = entry

    # 3. Speaker-ID probes on test-other.
    sources = [args.teacher] + [run["student_dir"] for run in runs.values()]
    sources += [f"random:{args.teacher}", "mfcc"]
    probes = run_probes(
        sources,
        speaker_train=str(output / "probe_fit.csv"),
        speaker_test=str(output / "probe_score.csv"),
    )
    names = {args.teacher: "teacher"}
    names.update({run["student_dir"]: name for name, run in runs.items()})
    results["speaker_probe"] = dict(
        speakers=num_speakers,
        fit_utterances=num_fit,
        score_utterances=num_score,
        results={names.get(s, s): r["speaker"] for s, r in probes.results.items()},
    )
    results["seconds"] = round(time.time() - start, 1)
    results["load_average_end"] = os.getloadavg()
    (output / "real_speech.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (output / "real_speech.md").write_text(table + "\n")
    print(table)


def markdown(results):
    """The three tables of the docs."""
    layer = results["layer_analysis"]
    lines = [
        f"Teacher {results['teacher']}, linear CKA on {layer['utterances']} "
        f"real utterances ({layer['frames']} frames), K = 4:",
        "",
        "| speech | groups |",
        "|---|---|",
        f"| LibriSpeech train-clean-100 | {layer['groups_real_speech']} |",
    ]
    for name, groups in layer["groups_builtin_corpus"].items():
        lines.append(f"| built-in corpus (the {name} run) | {groups} |")
    lines += [
        "",
        "| student | params | test-other cos / L1 | built-in dev cos / L1 |",
        "|---|---|---|---|",
    ]
    for name, entry in results["feature_distance"].items():
        real, synthetic = entry["test-other"], entry.get("builtin dev")
        cell = (
            f"{synthetic['mean_cosine']:.3f} / {synthetic['mean_l1']:.3f}"
            if synthetic
            else "-"
        )
        lines.append(
            f"| {name} | {entry['student_params']:,} | {real['mean_cosine']:.3f} / "
            f"{real['mean_l1']:.3f} | {cell} |"
        )
    probe = results["speaker_probe"]
    lines += [
        "",
        f"Speaker ID on test-other ({probe['speakers']} speakers, "
        f"{probe['fit_utterances']} utterances to fit, {probe['score_utterances']} "
        "to score):",
        "",
        "| features | accuracy % | hidden state chosen |",
        "|---|---|---|",
    ]
    for name, res in probe["results"].items():
        lines.append(f"| {name} | {res['accuracy']:.1f} | {res['layer']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
