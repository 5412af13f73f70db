"""CTC speech recognition on a frozen upstream (characters, greedy decoding).

Modules: ``upstream`` (:class:`~speechbrain_skill.lobes.upstream.SSLUpstream`)
and ``head`` (e.g. :class:`~speechbrain_skill.downstream.heads.BiLSTMCTCHead`).
Batches carry ``sig``, ``tokens`` (character indices) and ``words`` (the
normalised transcript).
Hyperparameters used besides the base ones: ``tokenizer``
(``speechbrain.dataio.encoder.CTCTextEncoder``), ``blank_index``,
``wer_file_prefix``.
"""

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process

from speechbrain_skill.downstream.brain import DownstreamBrain


def characters_to_words(characters):
    """Join decoded characters and split them into words.

    Arguments
    ---------
    characters : list of str
        Decoded characters, ``" "`` between words.

    Returns
    -------
    list of str

    Example
    -------
    >>> characters_to_words(list("HELLO  WORLD "))
    ['HELLO', 'WORLD']
    """
    return "".join(characters).split()


class CTCBrain(DownstreamBrain):
    """CTC loss on characters; word and character error rates (%)."""

    metric = "WER"
    higher_is_better = False

    def silent_batch(self):
        """One second of silence with a one-token transcript (zero-loss DDP step)."""
        token = 1 if self.hparams.blank_index == 0 else 0
        return super().silent_batch(tokens=torch.tensor([token]))

    def compute_forward(self, batch, stage):
        """CTC log-probabilities (batch, frames, vocab) and relative lengths."""
        batch = batch.to(self.device)
        feats, feat_lens = self.upstream_features(batch)
        return self.modules.head(feats, feat_lens), feat_lens

    def compute_objectives(self, predictions, batch, stage):
        """CTC loss; greedy decoding and error rates outside training."""
        log_probs, feat_lens = predictions
        tokens, token_lens = batch.tokens
        loss = sb.nnet.losses.ctc_loss(
            log_probs.float(),
            tokens,
            feat_lens,
            token_lens,
            blank_index=self.hparams.blank_index,
        )
        if stage != sb.Stage.TRAIN:
            sequences = sb.decoders.ctc_greedy_decode(
                log_probs, feat_lens, blank_id=self.hparams.blank_index
            )
            hyps = [
                characters_to_words(self.hparams.tokenizer.decode_ndim(seq))
                for seq in sequences
            ]
            refs = [words.split() for words in batch.words]
            self.wer_metric.append(batch.id, hyps, refs)
            self.cer_metric.append(batch.id, hyps, refs)
        return loss

    def reset_metrics(self, stage):
        """New word and character error-rate accumulators."""
        self.wer_metric = sb.utils.metric_stats.ErrorRateStats()
        self.cer_metric = sb.utils.metric_stats.ErrorRateStats(split_tokens=True)

    def summarize_metrics(self, stage):
        """WER and CER in percent; at test time, per-utterance details to a file."""
        if stage == sb.Stage.TEST and if_main_process():
            path = f"{self.hparams.wer_file_prefix}{self.test_name}.txt"
            with open(path, "w", encoding="utf-8") as handle:
                self.wer_metric.write_stats(handle)
        return {
            "WER": round(float(self.wer_metric.summarize("error_rate")), 4),
            "CER": round(float(self.cer_metric.summarize("error_rate")), 4),
            "utterances": len(self.wer_metric.scores),
        }
