#!/usr/bin/env python3
"""Query-by-example spoken term detection by DTW (SUPERB QbE, QUESST 2014).

No training: every hidden state of the upstream is tried on the development
queries, the best by MTWV is reported on the evaluation queries.

Usage::

    python train.py hparams/qbe_dtw.yaml --data_folder=/data/quesst14Database \
        --upstream_source=results/skill_wavlm/1986/student

The built-in analog works too (``--data_folder`` = a folder made by
``speechbrain_skill.data.analogs.queries.build_qbe_analog``). MTWV of ``dev``
(with the MTWV of every layer) and ``test`` (the evaluation queries) go to
``test_results.json``; the detections of the chosen layer to
``<set>.stdlist.xml`` for the official QUESST scorer.
"""

import logging
import sys
from pathlib import Path

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from quesst14_prepare import check_quesst_layout, prepare_quesst14
from speechbrain.utils.distributed import if_main_process, run_on_main

from speechbrain_skill.data.manifests import read_manifest
from speechbrain_skill.downstream.brain import update_results
from speechbrain_skill.downstream.qbe import evaluate_qbe, extract_all, write_stdlist
from speechbrain_skill.downstream.superb_metrics import twv_beta
from speechbrain_skill.training.checks import (
    check_data_folder,
    check_positive,
    check_run_options,
    read_settings,
)
from speechbrain_skill.training.command_line import parse_recipe_arguments
from speechbrain_skill.training.run_lock import lock_output_folder

logger = logging.getLogger(__name__)

if __name__ == "__main__":
    hparams_file, run_opts, overrides = parse_recipe_arguments(sys.argv[1:])
    # Plain settings first: a bad value, data folder or layout fails before
    # the yaml builds (and maybe downloads) the upstream.
    settings = read_settings(hparams_file, overrides)
    check_run_options(settings, run_opts)
    check_data_folder(settings["data_folder"], skip_prep=settings["skip_prep"])
    if not settings["skip_prep"]:
        check_quesst_layout(settings["data_folder"])
    check_positive(settings, ["min_query_frames"])
    lock_output_folder(settings["output_folder"])
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    run_on_main(
        prepare_quesst14,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["save_folder"],
            "languages": hparams["languages"],
            "skip_prep": hparams["skip_prep"],
        },
    )
    if if_main_process():
        save = Path(hparams["save_folder"])
        device = run_opts.get("device") or "cpu"
        upstream = hparams["upstream"].to(device)

        def wavs(name):
            """ID -> wav path of a prepared manifest."""
            return {
                row["ID"]: row["wav"] for row in read_manifest(save / f"{name}.csv")
            }

        bar = not run_opts.get("noprogressbar", False)
        documents, skipped = extract_all(upstream, wavs("documents"), device, bar)
        queries = {}
        for query_set in ("dev", "eval"):
            queries[query_set], more = extract_all(
                upstream, wavs(f"{query_set}_queries"), device, bar
            )
            skipped.update(more)
        if skipped:
            logger.warning("%d files unreadable, skipped: %s", len(skipped), skipped)
        truths = {
            query_set: {
                (row["query"], row["document"])
                for row in read_manifest(save / f"{query_set}_truth.csv")
            }
            for query_set in ("dev", "eval")
        }
        beta = twv_beta(hparams["p_target"], hparams["c_miss"], hparams["c_fa"])
        results, scores = evaluate_qbe(
            queries, documents, truths, beta, hparams["min_query_frames"]
        )
        description = {
            "source": upstream.source,
            "kind": upstream.kind,
            "params": upstream.num_params(),
            "num_hidden_states": upstream.num_hidden_states,
            "layer": results["dev"]["layer"],
        }
        for query_set, name in (("dev", "dev"), ("eval", "test")):
            stats = dict(results[query_set], skipped_files=len(skipped), beta=beta)
            update_results(
                hparams["results_file"],
                name,
                stats,
                metric="MTWV",
                higher_is_better=True,
                upstream=description,
            )
            write_stdlist(
                Path(hparams["output_folder"]) / f"{query_set}.stdlist.xml",
                scores[query_set],
                hparams["yes_threshold"],
            )
        hparams["train_logger"].log_stats(
            stats_meta={"layer (best on dev)": results["dev"]["layer"]},
            valid_stats={"MTWV": results["dev"]["MTWV"]},
            test_stats={"MTWV": results["eval"]["MTWV"]},
        )
        logger.info("Results written to %s", hparams["results_file"])
