"""One progress bar over a step budget, and a quiet normal end."""

import logging

import speechbrain as sb
import torch

from speechbrain_skill.training.progress import StepBudgetProgress


class Regression(StepBudgetProgress, sb.Brain):
    def compute_forward(self, batch, stage):
        return self.modules.model(batch[0])

    def compute_objectives(self, predictions, batch, stage):
        return torch.nn.functional.mse_loss(predictions, batch[1])


def _brain(limit, start_step=0):
    brain = Regression(
        {"model": torch.nn.Linear(2, 1)},
        lambda params: torch.optim.SGD(params, 0.1),
        hparams={"stage_name": "final"},
    )
    brain.optimizer_step_limit = limit
    brain.optimizer_step = start_step
    return brain


def _data():
    # 3 batches per epoch: a budget of 7 steps spans 3 epochs.
    data = torch.utils.data.TensorDataset(torch.randn(12, 2), torch.randn(12, 1))
    return torch.utils.data.DataLoader(data, batch_size=4)


def test_one_bar_over_the_budget_across_epochs(capsys, caplog):
    brain = _brain(7)
    with caplog.at_level(logging.INFO):
        brain.fit(range(1, 100), _data(), _data())
    bar = capsys.readouterr().err
    assert brain.optimizer_step == 7
    assert "final: 100%" in bar and "7/7" in bar and "/3 " not in bar
    assert "Train iteration limit exceeded" not in caplog.text
    assert "final: 7/7 steps" in caplog.text


def test_resumed_stage_starts_at_its_step(capsys):
    brain = _brain(7, start_step=5)
    brain.fit(range(1, 100), _data())
    bar = capsys.readouterr().err
    assert brain.optimizer_step == 7
    assert "5/7" in bar and "7/7" in bar
