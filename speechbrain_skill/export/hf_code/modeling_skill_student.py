"""Hugging Face model class of a speechbrain-skill student.

The layers are the student's own (:mod:`speechbrain_skill.lobes.student`);
the export inlines them into the folder's copy of this file.
"""

import torch
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from speechbrain_skill.export.hf_code.configuration_skill_student import (
    SkillStudentConfig,
)
from speechbrain_skill.lobes.student.config import StudentConfig
from speechbrain_skill.lobes.student.conv import FeatureExtractor, FeatureProjection
from speechbrain_skill.lobes.student.encoder import Encoder
from speechbrain_skill.lobes.student.forward import student_hidden_states


class SkillStudentModel(PreTrainedModel):
    """A student as a ``transformers`` model: ``output_hidden_states`` like WavLM's.

    ``hidden_states[0]`` is the input of the first transformer layer, entry
    ``i`` the output of layer ``i``; padding samples are given by
    ``attention_mask`` (1 on real samples), as for ``WavLMModel``.

    Arguments
    ---------
    config : SkillStudentConfig
        The config with the student architecture.

    Example
    -------
    >>> student = {"model_type": "hubert", "hidden_size": 32,
    ...     "num_attention_heads": 4, "conv_channels": [8, 8],
    ...     "conv_kernels": [10, 8], "conv_strides": [5, 4],
    ...     "attention_heads": [[0, 2]], "attention_present": [True],
    ...     "ffn_dims": [24], "ffn_present": [True],
    ...     "num_conv_pos_embeddings": 4, "num_conv_pos_embedding_groups": 4}
    >>> model = SkillStudentModel(SkillStudentConfig(student=student)).eval()
    >>> out = model(torch.randn(2, 800), output_hidden_states=True)
    >>> len(out.hidden_states), out.last_hidden_state.shape
    (2, torch.Size([2, 38, 32]))
    """

    config_class = SkillStudentConfig
    base_model_prefix = "skill_student"
    main_input_name = "input_values"

    def __init__(self, config):
        super().__init__(config)
        self.architecture = StudentConfig.from_dict(config.student)
        arch = self.architecture
        self.feature_extractor = FeatureExtractor(arch)
        self.feature_projection = FeatureProjection(
            arch.conv_channels[-1],
            arch.hidden_size,
            arch.feat_proj_layer_norm,
            arch.layer_norm_eps,
            arch.feat_proj_dropout,
        )
        self.encoder = Encoder(arch)
        self.post_init()

    def _init_weights(self, module):
        """Standard initialisation; the kept-head indices come from the config."""
        super()._init_weights(module)
        # Non-persistent buffers are not in the weights file.
        for index, layer in enumerate(self.encoder.layers):
            if layer.attention is module:
                heads = self.architecture.attention_heads[index]
                module.head_index.copy_(torch.tensor(heads, dtype=torch.long))

    def forward(
        self,
        input_values,
        attention_mask=None,
        output_hidden_states=None,
        return_dict=None,
        **kwargs,
    ):
        """Encode waveforms (batch, samples) at 16 kHz.

        Arguments
        ---------
        input_values : torch.Tensor
            Waveforms (batch, samples).
        attention_mask : torch.Tensor, optional
            1 on real samples, 0 on padding (batch, samples).
        output_hidden_states : bool, optional
            Return all hidden states (default: the config's setting).
        return_dict : bool, optional
            Return a ``BaseModelOutput`` (default) or a tuple.
        **kwargs
            Ignored (``output_attentions`` is not supported).

        Returns
        -------
        transformers.modeling_outputs.BaseModelOutput
        """
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        if return_dict is None:
            return_dict = self.config.return_dict
        lengths = None
        if attention_mask is not None:
            lengths = attention_mask.long().sum(dim=-1)
        states, _ = student_hidden_states(
            self, self.architecture, input_values, lengths
        )
        hidden_states = tuple(states) if output_hidden_states else None
        if not return_dict:
            return tuple(v for v in (states[-1], hidden_states) if v is not None)
        return BaseModelOutput(
            last_hidden_state=states[-1], hidden_states=hidden_states
        )
