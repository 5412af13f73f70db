"""Hugging Face custom code of the compact export (written into each export folder).

The modeling file written into a folder is this package's
``modeling_skill_student`` with the student's own layer code inlined
(:func:`speechbrain_skill.export.hf_compact.modeling_source`), so the folder
loads with ``trust_remote_code=True`` without this package.
"""
