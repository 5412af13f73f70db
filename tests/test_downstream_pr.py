"""Phoneme recognition: lexicon conversion, layout errors, analog and recipe."""

import csv
import json
import sys
from pathlib import Path

import pytest
from recipe_runner import recipe_args, run_recipe

from speechbrain_skill.data.analogs.phonemes import LEXICON
from speechbrain_skill.data.sentences import make_sentences

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "LibriSpeech" / "PR"
sys.path.insert(0, str(RECIPE))

from libriphone_prepare import prepare_libriphone, read_lexicon  # noqa: E402

YAML = "recipes/LibriSpeech/PR/hparams/pr_ctc_linear.yaml"


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_builtin_lexicon_covers_every_generated_sentence():
    lexicon = read_lexicon(LEXICON)
    words = {w for sentence in make_sentences(12000) for w in sentence.split()}
    assert words <= set(lexicon)
    # ARPAbet with stress: vowels carry 0/1/2.
    assert lexicon["CAPTAIN"] == ["K", "AE1", "P", "T", "AH0", "N"]


def test_unknown_words_leave_the_utterance_out_counted(builtin_corpus, tmp_path):
    lexicon = read_lexicon(LEXICON)
    dropped = "CAPTAIN"
    partial = tmp_path / "lexicon.txt"
    partial.write_text(
        "".join(f"{w}\t{' '.join(p)}\n" for w, p in lexicon.items() if w != dropped)
    )
    save = tmp_path / "save"
    prepare_libriphone(
        builtin_corpus,
        save,
        partial,
        ["train-clean-100"],
        ["dev-clean"],
        ["test-clean"],
    )
    words = {r["ID"]: r["wrd"] for r in _rows(save / "dev-clean.csv")}
    kept = _rows(save / "phones" / "dev-clean.csv")
    expected = [utt for utt, text in words.items() if dropped not in text.split()]
    assert [r["ID"] for r in kept] == expected
    oov = [
        r
        for r in _rows(save / "phones" / "excluded_oov.csv")
        if r["split"] == "dev-clean"
    ]
    assert len(oov) == len(words) - len(expected)
    assert all(r["missing_words"] == dropped for r in oov)
    # Phones follow the lexicon word by word.
    first = kept[0]
    assert first["phn"].split() == [p for w in first["wrd"].split() for p in lexicon[w]]


def test_missing_lexicon_stops_before_any_model_loads(builtin_corpus, tmp_path):
    folders = {"analog_pr": builtin_corpus}
    args = recipe_args(
        YAML,
        tmp_path / "out",
        folders,
        upstream_source="/no/model",
        lexicon_file=tmp_path / "none.txt",
    )
    log = run_recipe(YAML, args, expect_failure=True)
    assert "lexicon_file" in log and str(tmp_path / "none.txt") in log
    # One line, no traceback (a layout error is a user error).
    assert log.splitlines()[-1].startswith("error: ") and "Traceback" not in log
    assert "/no/model" not in log.splitlines()[-1]


@pytest.mark.slow
def test_pr_recipe_on_its_analog(recipe_run):
    out, _ = recipe_run(YAML)
    results = json.loads((out / "test_results.json").read_text())
    test = results["results"]["test-clean"]
    assert results["metric"] == "PER" and results["higher_is_better"] is False
    assert test["utterances"] == len(_rows(out / "save" / "phones" / "test-clean.csv"))
    assert test["PER"] >= 0
    phones = (out / "save" / "phones.txt").read_text()
    assert "'AE1'" in phones or "AE1" in phones
