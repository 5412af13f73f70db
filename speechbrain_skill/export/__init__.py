"""Exports of a student beyond its own folder format.

``folder``
    the one writer of model folders (:func:`write_model_folder`) and the
    preprocessor config every folder carries.
``hf_compact``
    Hugging Face custom code at the student's real size.
``hf_stock``
    stock ``WavLMModel`` / ``HubertModel`` / ``Wav2Vec2Model`` folders,
    pruned parts padded with exact zeros.
``inference``
    ``hyperparams.yaml`` and a ``speechbrain.inference``-style interface.
``onnx``
    ONNX with dynamic batch and length axes, checked in onnxruntime.
``card``
    the model card (``README.md``) of each export folder.
``exporter``
    all of the above for one student; ``python -m speechbrain_skill.export``.

This module imports nothing heavy: the student code writes its folders
through :mod:`speechbrain_skill.export.folder`.
"""
