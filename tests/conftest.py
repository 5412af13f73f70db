"""Shared fixtures: the built-in corpus, its manifests and tiny HF teachers."""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "recipes" / "LibriSpeech"))

SMALL_CORPUS = dict(
    num_speakers=4,
    train_utterances=4,
    dev_utterances=2,
    test_utterances=2,
    keywords_per_speaker=3,
    seed=0,
)


@pytest.fixture(scope="session")
def builtin_corpus(tmp_path_factory):
    """A small built-in corpus in LibriSpeech layout (4 speakers)."""
    from speechbrain_skill.data.synthetic_corpus import generate_corpus
    from speechbrain_skill.pretraining.whisper_ct2 import (
        MODEL_FILE,
        random_ct2_whisper_encoder,
        write_ct2_model,
    )

    root = tmp_path_factory.mktemp("builtin_corpus")
    generate_corpus(root, **SMALL_CORPUS)
    # A tiny random Whisper encoder in the CTranslate2 format, for the Whisper
    # distillation recipe's smoke test (--whisper_source={builtin_corpus}/...).
    tiny_whisper = root / "tiny_whisper_ct2"
    tiny_whisper.mkdir()
    tensors = random_ct2_whisper_encoder(
        d_model=8, layers=2, heads=2, ffn=16, mels=80, positions=1500
    )
    (tiny_whisper / MODEL_FILE).write_bytes(write_ct2_model("WhisperSpec", tensors))
    return root


@pytest.fixture(scope="session")
def manifests(builtin_corpus, tmp_path_factory):
    """csv manifests of the small corpus: train-clean-100, dev-clean, test-clean."""
    from librispeech_prepare import prepare_librispeech

    save = tmp_path_factory.mktemp("manifests")
    prepare_librispeech(
        builtin_corpus,
        save,
        tr_splits=["train-clean-100"],
        dev_splits=["dev-clean"],
        te_splits=["test-clean"],
    )
    return save


@pytest.fixture(scope="session")
def tiny_wavlm(tmp_path_factory):
    """A tiny random WavLM saved with save_pretrained."""
    from speechbrain_skill.lobes.tiny_models import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny_wavlm"), "wavlm", seed=0)


@pytest.fixture(scope="session")
def tiny_hubert(tmp_path_factory):
    """A tiny random HuBERT saved with save_pretrained."""
    from speechbrain_skill.lobes.tiny_models import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny_hubert"), "hubert", seed=0)


class AnalogFolders(dict):
    """Placeholders of the recipe tables: the corpus, and analogs built on demand."""

    def __init__(self, builtin_corpus, root):
        super().__init__(builtin_corpus=builtin_corpus)
        self.root = root

    def __missing__(self, key):
        from speechbrain_skill.data.analogs import build_analog

        if not key.startswith("analog_"):
            raise KeyError(key)
        self[key] = build_analog(key.removeprefix("analog_"), self.root, seed=0)
        return self[key]


@pytest.fixture(scope="session")
def analog_folders(builtin_corpus, tmp_path_factory):
    """Placeholder -> folder: the corpus and the ``analog_<task>`` folders."""
    return AnalogFolders(builtin_corpus, tmp_path_factory.mktemp("analogs"))


@pytest.fixture(scope="session")
def recipe_run(analog_folders, tmp_path_factory):
    """Run a recipe once per session with its table's debug flags.

    ``recipe_run(hparam_file)`` returns ``(output_folder, log)``.
    """
    from recipe_runner import recipe_args, recipe_row, run_recipe

    runs = {}

    def run(hparam_file):
        key = recipe_row(hparam_file)["Hparam_file"]
        if key not in runs:
            output = tmp_path_factory.mktemp(Path(key).stem)
            args = recipe_args(key, output, analog_folders)
            runs[key] = (output, run_recipe(key, args))
        return runs[key]

    return run
