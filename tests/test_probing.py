"""Linear probes on frozen features (speaker ID, word ID)."""

import json

import numpy as np
import pytest
import torch
from librispeech_prepare import prepare_librispeech

from speechbrain_skill.downstream.probing import (
    _folds,
    main,
    make_pooler,
    select_and_score,
)
from speechbrain_skill.lobes.hf_ssl import load_hf_ssl_model, random_ssl_model


@pytest.fixture(scope="module")
def keywords_csv(builtin_corpus, tmp_path_factory):
    folder = tmp_path_factory.mktemp("keywords")
    prepare_librispeech(builtin_corpus, folder, te_splits=["keywords"])
    return folder / "keywords.csv"


def test_word_folds_keep_each_speaker_in_one_fold():
    speakers = ["a", "a", "b", "b", "c", "c", "d", "d"]
    folds = _folds(len(speakers), 2, seed=0, groups=speakers)
    assert sorted(np.concatenate(folds).tolist()) == list(range(8))
    for fold in folds:
        inside = {speakers[i] for i in fold}
        outside = {speakers[i] for i in range(8) if i not in set(fold)}
        assert not inside & outside
    # More folds asked than there are speakers: one fold per speaker, none empty.
    folds = _folds(len(speakers), 6, seed=0, groups=speakers)
    assert sorted(len(fold) for fold in folds) == [2, 2, 2, 2]


def test_layer_and_l2_are_chosen_on_training_data_only():
    rng = np.random.RandomState(0)
    y_train, y_test = rng.randint(0, 3, 60), rng.randint(0, 3, 30)

    def features(y):
        noise = rng.randn(len(y), 4)
        informative = np.eye(3)[y] * 3 + 0.3 * rng.randn(len(y), 3)
        return np.stack([noise[:, :3], informative])

    result = select_and_score(features(y_train), y_train, features(y_test), y_test, 3)
    assert result["layer"] == 1 and result["accuracy"] > 90
    assert len(result["per_layer"]) == 2 and result["per_layer"][0] < 70


def test_word_probe_chooses_the_state_that_carries_over_to_new_voices():
    """Planted: state 0 names a word only within a voice, state 1 across voices."""
    rng = np.random.RandomState(0)
    speakers = np.repeat(np.arange(4), 5 * 3)  # 4 voices x 5 words x 3 takes
    words = np.tile(np.repeat(np.arange(5), 3), 4)
    codes = rng.randn(4, 5, 12) * 3  # a random code per (voice, word)
    voice_bound = codes[speakers, words] + 0.1 * rng.randn(60, 12)
    shared = np.eye(5)[words] + 0.35 * rng.randn(60, 5)
    shared = np.concatenate([shared, rng.randn(60, 7)], axis=1)
    feats = np.stack([voice_bound, shared])
    train, test = speakers < 3, speakers == 3
    args = (feats[:, train], words[train], feats[:, test], words[test], 5)
    grouped = select_and_score(*args, groups=speakers[train].tolist())
    assert grouped["layer"] == 1 and grouped["accuracy"] >= 80
    # Inner folds that mix voices reward the voice-bound state instead.
    mixed = select_and_score(*args)
    assert mixed["layer"] == 0 and mixed["accuracy"] < 50


def test_random_baseline_has_the_shape_but_not_the_weights(tiny_wavlm):
    trained = load_hf_ssl_model(tiny_wavlm)
    random = random_ssl_model(tiny_wavlm, seed=5)
    assert random.config.to_dict()["hidden_size"] == trained.config.hidden_size
    shapes = {k: v.shape for k, v in trained.state_dict().items()}
    assert shapes == {k: v.shape for k, v in random.state_dict().items()}
    assert not torch.equal(
        trained.encoder.layers[0].feed_forward.output_dense.weight,
        random.encoder.layers[0].feed_forward.output_dense.weight,
    )


def test_command_line_probes_all_sources(manifests, keywords_csv, tiny_wavlm, tmp_path):
    results = main(
        [
            "--sources",
            str(tiny_wavlm),
            f"random:{tiny_wavlm}",
            "mfcc",
            "--speaker_train",
            str(manifests / "dev-clean.csv"),
            "--speaker_test",
            str(manifests / "test-clean.csv"),
            "--words",
            str(keywords_csv),
            "--output",
            str(tmp_path),
        ]
    )
    saved = json.loads((tmp_path / "probe_results.json").read_text())
    assert list(saved["results"]) == [str(tiny_wavlm), f"random:{tiny_wavlm}", "mfcc"]
    for source, res in results.results.items():
        states = 1 if source == "mfcc" else 5
        assert len(res["speaker"]["per_layer"]) == states
        assert len(res["word"]["per_layer"]) == states
        assert 0 <= res["speaker"]["accuracy"] <= 100
        assert 0 <= res["word"]["accuracy"] <= 100
    assert saved["settings"]["speaker_sizes"] == [8, 8]
    assert saved["settings"]["word_size"] == 12
    table = (tmp_path / "probe_results.md").read_text()
    assert table.count("\n") == 5 and "| mfcc |" in table


def test_command_line_needs_a_task(tmp_path):
    with pytest.raises(SystemExit):
        main(["--sources", "mfcc", "--output", str(tmp_path)])


def test_pruned_student_folder_is_probed_like_the_upstream_lobe(tiny_wavlm, tmp_path):
    """The probe loads a pruned student folder as the downstream lobe does."""
    from speechbrain_skill.downstream.probing import ModelPooler
    from speechbrain_skill.lobes.student import PrunableSSLEncoder, save_student
    from speechbrain_skill.lobes.upstream import SSLUpstream

    student = PrunableSSLEncoder.from_hf(tiny_wavlm, prune_heads=True)
    masks = student.current_masks()
    masks["heads"] = [torch.tensor([1.0, 0.0, 1.0, 1.0])] * len(masks["heads"])
    save_student(student.eval().prune(masks), tmp_path / "pruned")
    pooler = ModelPooler(str(tmp_path / "pruned"))
    assert pooler.kind == "student"
    wav = torch.randn(16000, generator=torch.Generator().manual_seed(0))
    pooled = pooler(wav)
    upstream = SSLUpstream(tmp_path / "pruned")
    expected = [
        SSLUpstream(tmp_path / "pruned", layer=i)(wav[None])[0].mean(0).numpy()
        for i in range(upstream.num_hidden_states)
    ]
    np.testing.assert_allclose(pooled, np.stack(expected), atol=1e-5)


def test_whisper_source_pools_the_encoders_own_frames(tmp_path):
    """``whisper:<folder>``: every state, the utterance's frames only."""
    from transformers import WhisperFeatureExtractor

    from speechbrain_skill.pretraining.whisper_ct2 import (
        ct2_to_whisper_encoder,
        random_ct2_whisper_encoder,
    )

    encoder = ct2_to_whisper_encoder(
        random_ct2_whisper_encoder(d_model=8, layers=2, mels=80, positions=1500)
    )
    encoder.save_pretrained(tmp_path)
    pooler = make_pooler(f"whisper:{tmp_path}")
    wav = torch.randn(8000)  # 0.5 s: 24 WavLM frames of the 1500 of the window
    pooled = pooler(wav)
    assert pooled.shape == (3, 8)
    features = WhisperFeatureExtractor(feature_size=80)(
        wav.numpy(), sampling_rate=16000, return_tensors="pt"
    ).input_features
    with torch.no_grad():
        out = encoder(features, output_hidden_states=True)
    last = out.last_hidden_state[0, :24].mean(0).numpy()
    np.testing.assert_allclose(pooled[2], last, rtol=1e-4, atol=1e-5)
    # Not the whole window: the padding's frames are left out.
    assert not np.allclose(pooled[2], out.last_hidden_state[0].mean(0).numpy())
