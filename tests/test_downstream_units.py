"""Downstream building blocks: heads ignore padding, splits, skipping."""

import pytest
import torch

from speechbrain_skill.data.manifests import hash_split
from speechbrain_skill.downstream.heads import (
    BiLSTMCTCHead,
    PooledClassifier,
    masked_pooling,
)


def _padded(feats, extra):
    noise = 1e3 * torch.randn(feats.shape[0], extra, feats.shape[2])
    return torch.cat([feats, noise], dim=1)


@pytest.mark.parametrize("pooling", ["mean", "stats"])
def test_classifier_ignores_padding_frames(pooling):
    torch.manual_seed(0)
    head = PooledClassifier(6, 4, projection_size=5, pooling=pooling)
    feats = torch.randn(1, 7, 6)
    alone = head(feats, torch.tensor([1.0]))
    padded = head(_padded(feats, 3), torch.tensor([0.7]))
    torch.testing.assert_close(alone, padded)


def test_stats_pooling_is_mean_and_std_of_real_frames():
    feats = torch.tensor([[[0.0], [2.0], [50.0]]])
    assert masked_pooling(feats, torch.tensor([2 / 3]), "stats").tolist() == [
        [1.0, 1.0]
    ]
    with pytest.raises(ValueError, match="Unknown pooling"):
        masked_pooling(feats, torch.tensor([1.0]), "max")


def test_bilstm_ctc_head_ignores_padding_frames():
    torch.manual_seed(0)
    head = BiLSTMCTCHead(6, 5, hidden_size=4).eval()
    feats = torch.randn(1, 7, 6)
    alone = head(feats, torch.tensor([1.0]))
    padded = head(_padded(feats, 3), torch.tensor([0.7]))
    torch.testing.assert_close(alone, padded[:, :7])
    torch.testing.assert_close(alone.exp().sum(-1), torch.ones(1, 7))


def test_hash_split_is_deterministic_and_order_free():
    ids = [f"utt{i}" for i in range(40)]
    split = hash_split(ids)
    assert split == hash_split(list(reversed(ids)))
    assert sorted(split.values()).count("test") == 4
    assert sorted(split.values()).count("valid") == 4
    with pytest.raises(ValueError, match="at least 3"):
        hash_split(["a", "b"])


def test_brain_skips_unusable_batches_and_ddp_silent_step_changes_nothing(tiny_wavlm):
    from speechbrain_skill.data.dataio import SkippedBatch
    from speechbrain_skill.downstream.classification import (
        UtteranceClassificationBrain,
    )
    from speechbrain_skill.lobes.upstream import SSLUpstream

    brain = UtteranceClassificationBrain(
        modules={
            "upstream": SSLUpstream(tiny_wavlm),
            "head": PooledClassifier(32, 3, projection_size=4),
        },
        opt_class=lambda params: torch.optim.SGD(params, lr=0.1),
    )
    brain.init_optimizers()
    loss = brain.fit_batch(SkippedBatch([("a", "missing"), ("b", "too short (3)")]))
    assert float(loss) == 0.0
    assert brain.skipped == {"missing": {"a"}, "too short": {"b"}}
    assert brain.optimizer_step == 0
    before = [p.detach().clone() for p in brain.optimizer.param_groups[0]["params"]]
    # Under DDP an empty batch still runs a step (silence, zero loss), so that every
    # process joins the gradient all-reduce and steps its optimizer.
    brain.distributed_launch = True
    brain.fit_batch(SkippedBatch([("c", "missing")]))
    after = brain.optimizer.param_groups[0]["params"]
    assert brain.optimizer_step == 1 and brain.skipped["missing"] == {"a", "c"}
    assert all(torch.equal(a, b) for a, b in zip(before, after))
