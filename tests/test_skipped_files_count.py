"""A file found bad anywhere in a stage is counted, even if its batch was never used.

The scenario of issue 25: a truncated FLAC passes preparation (its header is
fine), and SpeechBrain fetches one more batch than it trains on when the step
limit is reached; the file was logged as skipped there but counted nowhere.
"""

import numpy as np
import pytest
import soundfile as sf
import speechbrain as sb
import torch

from speechbrain_skill.data.audio import reason_kind
from speechbrain_skill.data.dataio import SkipBadAudioCollate, make_audio_dataset
from speechbrain_skill.data.manifests import write_manifest
from speechbrain_skill.training.batch_skipping import SkipsUnusableBatches


class MeanBrain(SkipsUnusableBatches, sb.Brain):
    def compute_forward(self, batch, stage):
        return self.modules.scale(batch.sig.data.mean(dim=1, keepdim=True))

    def compute_objectives(self, predictions, batch, stage):
        return predictions.pow(2).mean()


def truncated_flac(path, seconds=2.0):
    """A FLAC whose header promises ``seconds`` but whose frames are cut off."""
    rng = np.random.default_rng(0)
    sf.write(str(path), 0.1 * rng.standard_normal(int(16000 * seconds)), 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def corpus(tmp_path, bad_position):
    rows = []
    for index in range(3):
        path = tmp_path / f"utt{index}.flac"
        if index == bad_position:
            truncated_flac(path)
        else:
            sf.write(str(path), 0.1 * np.ones(8000), 16000)
        rows.append([f"utt{index}", sf.info(str(path)).duration, str(path)])
    write_manifest(tmp_path / "train.csv", ["ID", "duration", "wav"], rows)
    return make_audio_dataset(tmp_path / "train.csv")


def fit(dataset, steps, num_workers=0):
    brain = MeanBrain(
        modules={"scale": torch.nn.Linear(1, 1)},
        opt_class=lambda params: torch.optim.SGD(params, lr=0.1),
        run_opts={"device": "cpu", "noprogressbar": True},
    )
    brain.optimizer_step_limit = steps
    brain.fit(
        range(1),
        dataset,
        train_loader_kwargs=dict(
            batch_size=1,
            shuffle=False,
            num_workers=num_workers,
            collate_fn=SkipBadAudioCollate(),
        ),
    )
    return brain


def test_truncated_flac_is_unreadable_but_passes_the_header_check(tmp_path):
    path = truncated_flac(tmp_path / "cut.flac")
    assert sf.info(str(path)).frames == 32000  # what preparation reads
    dataset = corpus(tmp_path, bad_position=0)
    sig = dataset[0]["sig"]
    assert reason_kind(sig.reason) == "unreadable"


@pytest.mark.parametrize("num_workers", [0, 1])
def test_bad_file_in_the_batch_fetched_after_the_last_step_is_counted(
    tmp_path, num_workers
):
    # Two steps; SpeechBrain fetches the third batch (the bad file), then stops.
    brain = fit(corpus(tmp_path, bad_position=2), steps=2, num_workers=num_workers)
    assert brain.optimizer_step == 2
    assert brain.sync_skipped() == {"unreadable": ["utt2"]}


def test_bad_file_in_a_trained_batch_is_counted_once(tmp_path):
    brain = fit(corpus(tmp_path, bad_position=0), steps=3)
    assert brain.sync_skipped() == {"unreadable": ["utt0"]}
    brain.reset_skipped()
    assert brain.sync_skipped() == {}
