"""The shared ``Brain`` of the downstream recipes.

:class:`DownstreamBrain` holds what every task shares: the frozen upstream
(``modules.upstream``, an :class:`~speechbrain_skill.lobes.upstream.SSLUpstream`),
an optimizer over the trainable parameters only (head + layer weights),
skipping of unusable audio, new-bob learning-rate annealing on the validation
loss, the best checkpoint by the task metric, and at test time a results json
plus the learned layer weights (json + PNG). Subclasses define the forward
pass, the loss and the metric (:mod:`~speechbrain_skill.downstream.classification`,
:mod:`~speechbrain_skill.downstream.asr`).

Hyperparameters used: ``opt_class``, ``lr_annealing``, ``epoch_counter``,
``train_logger``, ``results_file``, ``layer_weights_file``,
``layer_weights_plot``; when the upstream is fine-tuned (``freeze=False``),
``upstream_opt_class`` and ``upstream_lr_annealing``: the SSL model gets its
own optimizer and learning rate, as in SpeechBrain's wav2vec 2.0 recipes.
"""

import json
import logging
from pathlib import Path

import speechbrain as sb
from speechbrain.utils.distributed import if_main_process

from speechbrain_skill.downstream.layer_weights import (
    plot_layer_weights,
    save_layer_weights,
)
from speechbrain_skill.training.batch_skipping import (
    SkipsUnusableBatches,
    count_skipped,
)
from speechbrain_skill.training.modules import unwrap

logger = logging.getLogger(__name__)


def update_results(path, name, stats, **info):
    """Add one evaluated set to a results json (other sets are kept).

    Arguments
    ---------
    path : str or os.PathLike
        The results file.
    name : str
        Name of the evaluated set (e.g. ``test-clean``).
    stats : dict
        Metric values of that set.
    **info
        Top-level fields (metric name, upstream description, ...).

    Returns
    -------
    dict
        The whole document.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "results.json")
    >>> _ = update_results(path, "dev", {"WER": 50.0}, metric="WER")
    >>> sorted(update_results(path, "test", {"WER": 40.0})["results"])
    ['dev', 'test']
    """
    path = Path(path)
    document = json.loads(path.read_text()) if path.is_file() else {}
    document.update(info)
    document.setdefault("results", {})[name] = stats
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2))
    return document


class DownstreamBrain(SkipsUnusableBatches, sb.Brain):
    """Base Brain: frozen upstream + trainable head, metric-driven checkpoints.

    Subclasses set :attr:`metric` and :attr:`higher_is_better` and implement
    ``compute_forward``, ``compute_objectives``, :meth:`reset_metrics` and
    :meth:`summarize_metrics`.
    """

    metric = None
    higher_is_better = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.skipped = {}
        self.test_name = "test"
        self.train_stats = {}
        self.upstream_optimizer = None
        weighting = self.upstream.weighting
        if self.checkpointer is not None and weighting is not None:
            # The layer weights are checkpointed; the SSL model only when it trains.
            self.checkpointer.add_recoverable("upstream_layer_weights", weighting)
        if self.checkpointer is not None and self.upstream.finetuned_parameters():
            self.checkpointer.add_recoverable("upstream_model", self.upstream.model)

    @property
    def upstream(self):
        """The :class:`SSLUpstream`, unwrapped from DDP."""
        return unwrap(self.modules.upstream)

    def upstream_features(self, batch):
        """Upstream features and their relative lengths for ``batch.sig``."""
        wavs, wav_lens = batch.sig
        return self.modules.upstream(wavs, wav_lens, return_lengths=True)

    # ------------------------------------------------------------ optimizer
    def init_optimizers(self):
        """Head + layer weights: ``opt_class``; a fine-tuned SSL model: its own."""
        upstream_params = self.upstream.finetuned_parameters()
        upstream_ids = {id(p) for p in upstream_params}
        params = [
            p
            for p in self.modules.parameters()
            if p.requires_grad and id(p) not in upstream_ids
        ]
        self.optimizer = self.opt_class(params)
        self.optimizers_dict = {"optimizer": self.optimizer}
        self.upstream_optimizer = None
        if upstream_params:
            self.upstream_optimizer = self.hparams.upstream_opt_class(upstream_params)
            self.optimizers_dict["upstream_optimizer"] = self.upstream_optimizer
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)
            if self.upstream_optimizer is not None:
                self.checkpointer.add_recoverable(
                    "upstream_optimizer", self.upstream_optimizer
                )

    def evaluate(self, test_set, *args, name="test", **kwargs):
        """Evaluate on ``test_set``; results are stored under ``name``.

        Arguments
        ---------
        test_set : Dataset or DataLoader
            The evaluation data.
        *args
            Passed to :meth:`speechbrain.Brain.evaluate`.
        name : str
            Name of the set in the results file (e.g. ``test-clean``).
        **kwargs
            Passed to :meth:`speechbrain.Brain.evaluate`.

        Returns
        -------
        float
            Average loss.
        """
        self.test_name = name
        return super().evaluate(test_set, *args, **kwargs)

    # ------------------------------------------------------------ metrics
    def reset_metrics(self, stage):
        """Start accumulating the task metric for a stage."""
        raise NotImplementedError

    def summarize_metrics(self, stage):
        """Task metrics of the stage, as a dict including :attr:`metric`."""
        raise NotImplementedError

    def on_stage_start(self, stage, epoch=None):
        """Reset metric accumulators (and skipped counts) at each stage."""
        self.reset_skipped()
        self.reset_metrics(stage)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Anneal, log and checkpoint after validation; write results after test."""
        stats = {"loss": stage_loss}
        if stage != sb.Stage.TRAIN:
            stats.update(self.summarize_metrics(stage))
        skipped = self.sync_skipped()  # all processes, distinct files
        if skipped:
            stats["skipped_files"] = sum(count_skipped(skipped).values())
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
        elif stage == sb.Stage.VALID:
            old_lr, new_lr = self.hparams.lr_annealing(stage_loss)
            sb.nnet.schedulers.update_learning_rate(self.optimizer, new_lr)
            meta = {"epoch": epoch, "lr": old_lr}
            if self.upstream_optimizer is not None:
                old, new = self.hparams.upstream_lr_annealing(stage_loss)
                sb.nnet.schedulers.update_learning_rate(self.upstream_optimizer, new)
                meta["upstream_lr"] = old
            self.hparams.train_logger.log_stats(
                stats_meta=meta,
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            key = {"max_keys" if self.higher_is_better else "min_keys": [self.metric]}
            self.checkpointer.save_and_keep_only(meta=stats, num_to_keep=1, **key)
        else:
            self.hparams.train_logger.log_stats(
                stats_meta={
                    "set": self.test_name,
                    "epoch loaded": self.hparams.epoch_counter.current,
                },
                test_stats=stats,
            )
            if if_main_process():
                self.write_results(stats)

    def write_results(self, stats):
        """Write the test results and the layer weights (json + PNG)."""
        upstream = self.upstream
        description = {
            "source": upstream.source,
            "kind": upstream.kind,
            "params": upstream.num_params(),
            "num_hidden_states": upstream.num_hidden_states,
            "layer": upstream.layer,
        }
        update_results(
            self.hparams.results_file,
            self.test_name,
            stats,
            metric=self.metric,
            higher_is_better=self.higher_is_better,
            upstream=description,
        )
        weights = upstream.layer_weights().tolist()
        save_layer_weights(self.hparams.layer_weights_file, weights, **description)
        plot_layer_weights(
            {Path(upstream.source).name or upstream.source: weights},
            self.hparams.layer_weights_plot,
            title=f"Learned layer weights, upstream {upstream.source}",
        )
        logger.info("Results written to %s", self.hparams.results_file)
