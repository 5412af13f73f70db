"""CTC ASR recipe on the built-in corpus: trains, evaluates dev and test."""

import json
from pathlib import Path

from speechbrain_skill.downstream.compare import run_recipe

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "LibriSpeech" / "ASR"


def test_asr_recipe_on_builtin_corpus(builtin_corpus, tiny_wavlm, tmp_path):
    out = tmp_path / "asr"
    assert run_recipe(
        RECIPE / "train.py",
        [
            str(RECIPE / "hparams" / "ctc_bilstm.yaml"),
            f"--data_folder={builtin_corpus}",
            f"--upstream_source={tiny_wavlm}",
            f"--output_folder={out}",
            "--number_of_epochs=1",
            "--batch_size=4",
            "--num_workers=0",
            "--head_size=16",
        ],
        in_process=True,
    )
    results = json.loads((out / "test_results.json").read_text())
    assert results["metric"] == "WER" and not results["higher_is_better"]
    for split in ("dev-clean", "test-clean"):
        stats = results["results"][split]
        assert stats["utterances"] == 8 and stats["WER"] >= 0.0 and stats["CER"] >= 0.0
        assert "%WER" in (out / f"wer_{split}.txt").read_text()
    characters = (out / "save" / "characters.txt").read_text()
    assert "'<blank>' => 0" in characters
    assert len(json.loads((out / "layer_weights.json").read_text())["weights"]) == 5
