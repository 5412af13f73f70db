"""Query-by-example: DTW search on planted matches, layout errors, recipe."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from recipe_runner import recipe_args, run_recipe

from speechbrain_skill.downstream.qbe import evaluate_qbe, subsequence_dtw_cost

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "QUESST14" / "QbE"
sys.path.insert(0, str(RECIPE))

from quesst14_prepare import read_truth  # noqa: E402

YAML = "recipes/QUESST14/QbE/hparams/qbe_dtw.yaml"


def test_dtw_finds_a_query_stretched_inside_a_document():
    rng = np.random.default_rng(0)
    query = rng.normal(size=(6, 4))
    # The query at half speed (each frame twice) inside noise: every query
    # frame finds its copy, so the cost is 0; a shuffled query costs more.
    doc = np.concatenate([rng.normal(size=(5, 4)), np.repeat(query, 2, axis=0)])

    def dist(q, d):
        return np.linalg.norm(q[:, None] - d[None], axis=-1)

    assert subsequence_dtw_cost(dist(query, doc)) == 0.0
    assert subsequence_dtw_cost(dist(query[::-1], doc)) > 0.1


def test_layer_with_planted_matches_is_chosen_and_scores_mtwv_1():
    rng = np.random.default_rng(1)
    layers, dim = 3, 8
    words = {f"w{i}": rng.normal(size=(8, dim)) for i in range(4)}
    documents, truth = {}, {"dev": set(), "eval": set()}
    for index in range(12):
        name = f"doc{index}"
        word = f"w{index % 4}"
        planted = np.concatenate(
            [rng.normal(size=(10, dim)), words[word], rng.normal(size=(10, dim))]
        )
        # Layer 1 carries the words; layers 0 and 2 are noise.
        documents[name] = [
            rng.normal(size=planted.shape),
            planted,
            rng.normal(size=planted.shape),
        ]
        query_set = "dev" if word in ("w0", "w1") else "eval"
        truth[query_set].add((f"q_{word}", name))
    queries = {
        "dev": {
            f"q_{w}": [rng.normal(size=(8, dim)), words[w], rng.normal(size=(8, dim))]
            for w in ("w0", "w1")
        },
        "eval": {
            f"q_{w}": [rng.normal(size=(8, dim)), words[w], rng.normal(size=(8, dim))]
            for w in ("w2", "w3")
        },
    }
    results, scores = evaluate_qbe(queries, documents, truth, beta=12.49)
    assert results["dev"]["layer"] == 1 and len(results["dev"]["per_layer"]) == layers
    assert results["dev"]["MTWV"] == pytest.approx(1.0)
    assert results["eval"]["MTWV"] == pytest.approx(1.0)
    assert max(results["dev"]["per_layer"][0], results["dev"]["per_layer"][2]) < 1.0
    # Every trial of the chosen layer is scored.
    assert len(scores["eval"]) == 2 * len(documents)


def test_rttm_truth_is_read_as_query_document_pairs(tmp_path):
    folder = tmp_path / "scoring" / "groundtruth_quesst14_dev"
    folder.mkdir(parents=True)
    (folder / "quesst14_dev.rttm").write_text(
        "LEXEME quesst14_00007 1 1.20 0.50 quesst14_dev_0001 lex <NA> <NA>\n"
        "SPEAKER quesst14_00007 1 0.00 3.00 <NA> <NA> spk <NA>\n"
        "LEXEME quesst14_00009 1 0.40 0.30 quesst14_dev_0002 lex <NA> <NA>\n"
    )
    assert read_truth(tmp_path, "dev") == {
        ("quesst14_dev_0001", "quesst14_00007"),
        ("quesst14_dev_0002", "quesst14_00009"),
    }


def test_wrong_layout_stops_before_any_model_loads(tmp_path):
    (tmp_path / "scoring").mkdir()
    (tmp_path / "scoring" / "language_key_dev.lst").write_text("")
    folders = {"analog_qbe": tmp_path}
    args = recipe_args(YAML, tmp_path / "out", folders, upstream_source="/no/model")
    log = run_recipe(YAML, args, expect_failure=True)
    last = log.strip().splitlines()[-1]
    assert "language_key_utterances.lst" in last and "language_key_dev.lst" not in last
    assert "groundtruth_quesst14_eval" in last


@pytest.mark.slow
def test_qbe_recipe_on_its_analog(recipe_run):
    out, _ = recipe_run(YAML)
    results = json.loads((out / "test_results.json").read_text())
    assert results["metric"] == "MTWV" and results["higher_is_better"]
    dev, test = results["results"]["dev"], results["results"]["test"]
    states = results["upstream"]["num_hidden_states"]
    assert len(dev["per_layer"]) == states and dev["MTWV"] == max(dev["per_layer"])
    assert test["layer"] == dev["layer"] and 0.0 <= test["MTWV"] <= 1.0
    assert "<stdlist" in (out / "eval.stdlist.xml").read_text()
