"""CTC ASR recipe on the built-in corpus: trains, evaluates dev and test."""

import csv
import json
import re

import pytest

from speechbrain_skill.lobes.teacher import FrozenSSLTeacher

ALPHABET = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ'")


def _reference_words(manifest):
    """Words of a manifest's transcripts, normalised as the recipe does."""
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    words = [
        "".join(c for c in word if c in ALPHABET)
        for row in rows
        for word in row["wrd"].upper().split()
    ]
    return len(rows), len([word for word in words if word])


@pytest.mark.slow
def test_asr_recipe_on_builtin_corpus(recipe_run):
    out, _ = recipe_run("recipes/LibriSpeech/ASR/hparams/ctc_bilstm.yaml")
    results = json.loads((out / "test_results.json").read_text())
    assert results["metric"] == "WER" and not results["higher_is_better"]
    for split in ("dev-clean", "test-clean"):
        stats = results["results"][split]
        utterances, words = _reference_words(out / "save" / f"{split}.csv")
        assert stats["utterances"] == utterances == 8
        # The WER file counts the errors over the manifest's words, and the
        # reported WER is that ratio.
        header = (out / f"wer_{split}.txt").read_text()
        found = re.search(
            r"%WER ([\d.]+) \[ (\d+) / (\d+), (\d+) ins, (\d+) del, (\d+) sub \]",
            header,
        )
        wer, errors, total, ins, dels, subs = found.groups()
        assert int(total) == words
        assert int(errors) == int(ins) + int(dels) + int(subs)
        assert stats["WER"] == pytest.approx(100 * int(errors) / words, abs=0.01)
        assert float(wer) == pytest.approx(stats["WER"], abs=0.01)
        assert stats["CER"] >= 0.0
    characters = (out / "save" / "characters.txt").read_text()
    assert "'<blank>' => 0" in characters
    weights = json.loads((out / "layer_weights.json").read_text())["weights"]
    assert len(weights) == FrozenSSLTeacher("builtin:tiny-wavlm").num_hidden_states
