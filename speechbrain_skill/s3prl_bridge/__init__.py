"""Every upstream this package loads, usable as an s3prl upstream.

* :class:`~speechbrain_skill.s3prl_bridge.expert.UpstreamExpert`: s3prl's
  upstream interface (a list of 1-D 16 kHz waveforms in,
  ``{"hidden_states": [...]}`` out, ``get_downsample_rates``) over any source
  :func:`~speechbrain_skill.lobes.upstream.load_upstream_model` takes: a
  student folder (pruned WavLM / HuBERT / wav2vec 2.0, DistilHuBERT shape), a
  Hugging Face folder (``hf_stock/``) or ``builtin:<name>``.
* :func:`~speechbrain_skill.s3prl_bridge.hub.register`: adds the hub entry
  ``speechbrain_skill`` to ``s3prl.hub``, so ``S3PRLUpstream`` and s3prl's
  downstream runner find it by name.
* ``python -m speechbrain_skill.s3prl_bridge ...``: s3prl's own
  ``run_downstream`` with the entry registered (its arguments unchanged).

s3prl is an optional extra (``pip install speechbrain_skill[s3prl]``); the
compatibility shims it needs next to this package's pins are in
:mod:`~speechbrain_skill.s3prl_bridge.compat`.
"""

from speechbrain_skill.s3prl_bridge.expert import UpstreamExpert
from speechbrain_skill.s3prl_bridge.hub import HUB_NAME, register

__all__ = ["HUB_NAME", "UpstreamExpert", "register"]
