"""Command line of the layer analysis: ``python -m speechbrain_skill.layer_groups``.

Runs :func:`~speechbrain_skill.layer_groups.analysis.run_layer_analysis` on a
manifest, or on every audio file of a data folder (LibriSpeech layout or flat),
and prints how many utterances it used and its summary. See ``--help``.
"""

import argparse
import logging
import os
import sys

import torch

from speechbrain_skill.layer_groups.accumulators import MEASURES
from speechbrain_skill.layer_groups.analysis import run_layer_analysis
from speechbrain_skill.layer_groups.clustering import LINKAGES
from speechbrain_skill.lobes.student.model import HIDDEN_STATE_ZERO

logger = logging.getLogger(__name__)


def build_parser():
    """Command-line options of ``python -m speechbrain_skill.layer_groups``.

    Returns
    -------
    argparse.ArgumentParser

    Example
    -------
    >>> args = build_parser().parse_args(
    ...     ["--teacher", "t", "--manifest", "m.csv", "--output", "out"]
    ... )
    >>> args.k, args.linkage, args.measure, args.num_utterances
    (4, 'average', 'cka', 1000)
    """
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_skill.layer_groups",
        description=(
            "Similarity of all hidden states of a frozen SSL teacher over a "
            "calibration set, and hierarchical clustering of the layers into K "
            "groups. Writes the matrix (npy, csv), groups.json, a heatmap and a "
            "dendrogram (PNG) into the output folder."
        ),
    )
    parser.add_argument(
        "--teacher",
        required=True,
        help="hub id (microsoft/wavlm-base-plus), local folder or builtin:<name>",
    )
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--manifest", help="csv manifest with ID, duration, wav")
    data.add_argument(
        "--data_folder",
        help="folder of .flac/.wav files at any depth (e.g. a LibriSpeech split "
        "or the built-in corpus); its manifest is written to the output folder",
    )
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument(
        "--num_utterances",
        type=int,
        default=1000,
        help="calibration size: seeded random subset of the manifest (default 1000)",
    )
    parser.add_argument("--k", type=int, default=4, help="number of groups")
    parser.add_argument("--linkage", default="average", choices=LINKAGES)
    parser.add_argument("--measure", default="cka", choices=sorted(MEASURES))
    parser.add_argument(
        "--hidden_state_zero",
        default="projection",
        choices=HIDDEN_STATE_ZERO,
        help="state 0 (row 0): the feature projection output before the "
        "positional conv (DPHuBERT reference, the distillation default) or "
        "Hugging Face's hidden_states[0] (transformer_input)",
    )
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument(
        "--max_frames_per_utterance",
        type=int,
        default=None,
        help="random subset of frames per utterance (default: all)",
    )
    parser.add_argument(
        "--max_seconds",
        type=float,
        default=None,
        help="use only the first seconds of each utterance",
    )
    parser.add_argument(
        "--minibatch_size",
        type=int,
        default=None,
        help="frames per minibatch for --measure cka_minibatch (default 1024)",
    )
    parser.add_argument(
        "--float32_products",
        action="store_true",
        help="cka: products in float32, sums in float64 (the default; kept for "
        "existing command lines)",
    )
    parser.add_argument(
        "--float64_products",
        action="store_true",
        help="cka, cka_minibatch: products in float64 (exact, slower; on consumer "
        "GPUs 30-60x slower)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--no_progress", action="store_true", help="hide the progress bar"
    )
    return parser


def _check_args(args):
    if args.manifest is not None and not os.path.isfile(args.manifest):
        raise ValueError(f"Manifest not found: {args.manifest}")
    if args.num_utterances is not None and args.num_utterances < 1:
        raise ValueError(f"--num_utterances must be >= 1, got {args.num_utterances}.")
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}.")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device} asked, but CUDA is not available.")
    if args.minibatch_size is not None and args.measure != "cka_minibatch":
        raise ValueError("--minibatch_size only applies to --measure cka_minibatch.")
    if args.float32_products and args.measure != "cka":
        raise ValueError("--float32_products only applies to --measure cka.")
    if args.float64_products and args.measure == "cosine":
        raise ValueError("--float64_products only applies to the CKA measures.")
    if args.float64_products and args.float32_products:
        raise ValueError("Choose one of --float32_products and --float64_products.")


def calibration_manifest(args):
    """The manifest to read (written from ``--data_folder`` if given); says its size.

    Arguments
    ---------
    args : argparse.Namespace
        Parsed options (``manifest`` or ``data_folder``, ``output``,
        ``num_utterances``).

    Returns
    -------
    str
        Path of the manifest.
    """
    from speechbrain_skill.data.manifests import audio_folder_manifest, read_manifest

    manifest, source = args.manifest, args.manifest
    if args.data_folder is not None:
        manifest = os.path.join(args.output, "calibration_manifest.csv")
        _, excluded = audio_folder_manifest(args.data_folder, manifest)
        source = f"{args.data_folder} ({excluded} unusable files left out)"
    available = len(read_manifest(manifest))
    wanted = args.num_utterances
    used = available if wanted is None else min(wanted, available)
    note = ""
    if wanted is not None and wanted > available:
        note = f"; --num_utterances {wanted} asked for more than there are"
    print(f"Calibration set: {used} of {available} utterances in {source}{note}.")
    return manifest


def main(argv=None):
    """Run the analysis from the command line; returns the exit status.

    Arguments
    ---------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 1 on a bad input.

    Example
    -------
    >>> main(["--teacher", "t", "--manifest", "no/such.csv", "--output", "o"])
    1
    """
    from speechbrain_skill.data.dataio import make_audio_dataloader

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        _check_args(args)
        manifest = calibration_manifest(args)
        loader = make_audio_dataloader(
            manifest,
            batch_size=args.batch_size,
            max_utterances=args.num_utterances,
            seed=args.seed,
            max_seconds=args.max_seconds,
        )
        options = {}
        if args.minibatch_size is not None:
            options["minibatch_size"] = args.minibatch_size
        if args.measure != "cosine":
            wide = args.float64_products
            options["product_dtype"] = torch.float64 if wide else torch.float32
        result = run_layer_analysis(
            args.teacher,
            loader,
            args.output,
            k=args.k,
            linkage=args.linkage,
            measure=args.measure,
            max_frames_per_utterance=args.max_frames_per_utterance,
            seed=args.seed,
            device=args.device,
            progress=not args.no_progress,
            metadata={"manifest": os.path.abspath(manifest)},
            hidden_state_zero=args.hidden_state_zero,
            **options,
        )
    except ValueError as err:
        print(f"layer_analysis: error: {err}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
