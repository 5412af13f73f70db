"""Evidence that the shipped tiny teacher learned something, in one command.

    python benchmarks/tiny_teacher_eval.py --output results/tiny_teacher_eval

1. Builds the built-in corpus the teacher was pretrained on (same arguments as
   in its model card; reused when it exists). Only its held-out parts are used
   here: dev-clean, test-clean (sentences) and keywords (single words).
2. Linear probes (speechbrain_skill.downstream.probing): speaker ID (fit on dev-clean,
   score on test-clean) and word ID (keywords, speaker-disjoint folds) on
   builtin:tiny-wavlm, the same architecture randomly initialised, and MFCCs.
3. Layer similarity (linear CKA, speechbrain_skill.layer_groups.analysis) of the
   pretrained and the random model on dev-clean: heatmaps side by side in
   docs/tiny_teacher.md (copied to docs/images/ with --update_docs).

Writes probe_results.{json,md}, cka/<model>/..., summary.json to --output.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "recipes" / "LibriSpeech"))

from librispeech_prepare import prepare_librispeech  # noqa: E402

from speechbrain_skill.data.dataio import make_audio_dataloader  # noqa: E402
from speechbrain_skill.data.synthetic_corpus import generate_corpus  # noqa: E402
from speechbrain_skill.downstream.probing import run_probes, save_random_model_like  # noqa: E402
from speechbrain_skill.layer_groups.analysis import run_layer_analysis  # noqa: E402

# The corpus of the model card (speechbrain_skill/assets/models/tiny-wavlm).
CORPUS = dict(
    num_speakers=20,
    train_utterances=50,
    dev_utterances=8,
    test_utterances=8,
    keywords_per_speaker=20,
    seed=0,
)
TEACHER = "builtin:tiny-wavlm"


def off_diagonal_mean(matrix):
    """Mean similarity between different hidden states."""
    matrix = np.asarray(matrix)
    mask = ~np.eye(len(matrix), dtype=bool)
    return float(matrix[mask].mean())


def adjacent_mean(matrix):
    """Mean similarity of consecutive hidden states (i, i + 1)."""
    matrix = np.asarray(matrix)
    return float(np.mean([matrix[i, i + 1] for i in range(len(matrix) - 1)]))


def main(argv=None):
    """Run the probes and the CKA comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="results/tiny_teacher_eval")
    parser.add_argument("--corpus", default="data/tiny_teacher_corpus")
    parser.add_argument("--teacher", default=TEACHER)
    parser.add_argument("--skip_cka", action="store_true")
    parser.add_argument(
        "--update_docs", action="store_true", help="copy heatmaps to docs/images"
    )
    args = parser.parse_args(argv)
    output = Path(args.output)
    manifests = output / "manifests"
    generate_corpus(args.corpus, **CORPUS)
    prepare_librispeech(
        args.corpus,
        manifests,
        dev_splits=["dev-clean"],
        te_splits=["test-clean", "keywords"],
    )

    random_dir = save_random_model_like(args.teacher, output / "random-init")
    probes = run_probes(
        [args.teacher, f"random:{args.teacher}", "mfcc"],
        speaker_train=str(manifests / "dev-clean.csv"),
        speaker_test=str(manifests / "test-clean.csv"),
        words=str(manifests / "keywords.csv"),
    )
    (output / "probe_results.json").write_text(
        json.dumps(dict(results=probes.results, settings=probes.settings), indent=2)
    )
    (output / "probe_results.md").write_text(probes.table() + "\n")
    summary = dict(corpus=CORPUS, probes=probes.results)
    print(probes.table())

    if not args.skip_cka:
        summary["cka"] = {}
        for name, source in (("pretrained", args.teacher), ("random", random_dir)):
            loader = make_audio_dataloader(
                str(manifests / "dev-clean.csv"), batch_size=8
            )
            result = run_layer_analysis(
                source,
                loader,
                output / "cka" / name,
                k=4,
                title=f"tiny-wavlm ({name}): linear CKA, dev-clean",
                teacher_name=f"tiny-wavlm-{name}",
                progress=False,
            )
            summary["cka"][name] = dict(
                matrix=np.round(result.similarity, 4).tolist(),
                off_diagonal_mean=round(off_diagonal_mean(result.similarity), 4),
                adjacent_mean=round(adjacent_mean(result.similarity), 4),
                groups=result.groups,
                utterances=result.stats.num_utterances,
                frames=result.stats.num_frames_used,
            )
            if args.update_docs:
                shutil.copy(
                    result.files["heatmap"],
                    REPO / "docs" / "images" / f"tiny_teacher_cka_{name}.png",
                )
            print(
                f"CKA {name}: {summary['cka'][name]['off_diagonal_mean']} "
                f"(mean off-diagonal), groups {result.groups}"
            )
    (output / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"Written to {output}")


if __name__ == "__main__":
    main()
