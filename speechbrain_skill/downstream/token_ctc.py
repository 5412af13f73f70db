"""CTC on token sequences: phoneme recognition (PER) and slot filling (F1, CER).

Targets are lists of tokens (phones such as ``AH0``; characters with slot
tags such as ``B-artist``), encoded by a
``speechbrain.dataio.encoder.CTCTextEncoder`` (``hparams.tokenizer``, blank
at ``hparams.blank_index``). Outside training the greedy CTC output is
decoded back to tokens and scored against the reference tokens by the
subclass:

* :class:`PhoneCTCBrain`: phone error rate (%), SUPERB PR;
* :class:`SlotCTCBrain`: slot-type F1 and slot-value CER (%), SUPERB SF,
  plus the word and character error rates of the untagged text.

Modules: ``upstream`` and ``head`` (frame-level log-probabilities). Batches
carry ``sig`` and ``tokens``.
"""

import speechbrain as sb
import torch

from speechbrain_skill.downstream.brain import DownstreamBrain
from speechbrain_skill.downstream.superb_metrics import (
    error_rate,
    slot_type_f1,
    slot_value_cer,
)

SPACE = " "


def is_slot_tag(token):
    """Whether a token is a slot boundary tag (``B-<type>`` / ``E-<type>``).

    Example
    -------
    >>> is_slot_tag("B-artist"), is_slot_tag("B"), is_slot_tag("a")
    (True, False, False)
    """
    return len(token) > 2 and token[:2] in ("B-", "E-")


def slot_text_to_tokens(text):
    """Slot-tagged text -> characters, spaces and whole tags.

    Example
    -------
    >>> slot_text_to_tokens("play B-artist abba E-artist")
    ['p', 'l', 'a', 'y', ' ', 'B-artist', ' ', 'a', 'b', 'b', 'a', ' ', 'E-artist']
    """
    tokens = []
    for index, word in enumerate(text.split()):
        if index:
            tokens.append(SPACE)
        tokens.extend([word] if is_slot_tag(word) else list(word))
    return tokens


def tokens_to_slot_text(tokens):
    """Inverse of :func:`slot_text_to_tokens`; a tag is always a word of its own.

    Example
    -------
    >>> tokens_to_slot_text(["p", "B-x", "a", " ", "b", "E-x"])
    'p B-x a b E-x'
    """
    words, current = [], ""
    for token in tokens:
        if token == SPACE or is_slot_tag(token):
            if current:
                words.append(current)
            current = ""
            if token != SPACE:
                words.append(token)
        else:
            current += token
    if current:
        words.append(current)
    return " ".join(words)


class TokenCTCBrain(DownstreamBrain):
    """CTC loss on token sequences; greedy decoding to tokens outside training."""

    metric = None
    higher_is_better = False

    def silent_batch(self):
        """One second of silence with a one-token target (zero-loss DDP step)."""
        token = 1 if self.hparams.blank_index == 0 else 0
        return super().silent_batch(tokens=torch.tensor([token]))

    def compute_forward(self, batch, stage):
        """CTC log-probabilities (batch, frames, vocab) and relative lengths."""
        batch = batch.to(self.device)
        feats, feat_lens = self.upstream_features(batch)
        return self.modules.head(feats, feat_lens), feat_lens

    def compute_objectives(self, predictions, batch, stage):
        """CTC loss; decoded and reference tokens are kept outside training."""
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
            decoder = self.hparams.tokenizer
            sequences = sb.decoders.ctc_greedy_decode(
                log_probs, feat_lens, blank_id=self.hparams.blank_index
            )
            lengths = torch.round(token_lens * tokens.shape[1]).long()
            for sequence, target, length in zip(sequences, tokens, lengths):
                self.hypotheses.append(decoder.decode_ndim(sequence))
                self.references.append(decoder.decode_ndim(target[:length].tolist()))
        return loss

    def reset_metrics(self, stage):
        """Empty the decoded and reference token lists."""
        self.hypotheses, self.references = [], []


class PhoneCTCBrain(TokenCTCBrain):
    """Phoneme recognition: phone error rate (%)."""

    metric = "PER"
    higher_is_better = False

    def summarize_metrics(self, stage):
        """PER over all utterances of the stage."""
        return {
            "PER": round(error_rate(self.hypotheses, self.references), 4),
            "utterances": len(self.references),
        }


class SlotCTCBrain(TokenCTCBrain):
    """Slot filling: slot-type F1 (the checkpoint metric) and slot-value CER."""

    metric = "slot_type_f1"
    higher_is_better = True

    def summarize_metrics(self, stage):
        """Slot-type F1, slot-value CER, and WER / CER of the untagged words."""
        hyps = [tokens_to_slot_text(tokens) for tokens in self.hypotheses]
        refs = [tokens_to_slot_text(tokens) for tokens in self.references]

        def words(text):
            """The words of a text without its slot tags."""
            return [word for word in text.split() if not is_slot_tag(word)]

        hyp_words = [words(text) for text in hyps]
        ref_words = [words(text) for text in refs]
        return {
            "slot_type_f1": round(slot_type_f1(hyps, refs), 4),
            "slot_value_cer": round(slot_value_cer(hyps, refs), 4),
            "WER": round(error_rate(hyp_words, ref_words), 4),
            "CER": round(
                error_rate(
                    [" ".join(w) for w in hyp_words], [" ".join(w) for w in ref_words]
                ),
                4,
            ),
            "utterances": len(refs),
        }
