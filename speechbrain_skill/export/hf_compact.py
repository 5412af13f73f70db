"""Compact Hugging Face export: the student at its real size, as custom code.

The folder holds ``config.json`` (``model_type: skill_student``, the per-layer
dimensions, ``auto_map``), ``configuration_skill_student.py``,
``modeling_skill_student.py`` (the student's own layer code, inlined: the
folder needs ``torch`` and ``transformers`` only), ``model.safetensors`` and
``preprocessor_config.json``. Load it with::

    from transformers import AutoModel
    model = AutoModel.from_pretrained(folder, trust_remote_code=True)
    out = model(wavs, attention_mask=mask, output_hidden_states=True)

The model normalises waveforms itself when the student does, so the
preprocessor config says ``do_normalize: false``.
"""

from speechbrain_skill import __version__
from speechbrain_skill.export.bundle import bundle_module
from speechbrain_skill.export.folder import preprocessor_config, write_model_folder
from speechbrain_skill.training.modules import unwrap

CODE_PACKAGE = "speechbrain_skill.export.hf_code"
CONFIG_MODULE = "configuration_skill_student"
MODEL_MODULE = "modeling_skill_student"
CONFIG_CLASS = "SkillStudentConfig"
MODEL_CLASS = "SkillStudentModel"
GENERATED = (
    "# Written by speechbrain-skill {version} from its student code: it needs only\n"
    "# torch and transformers. Regenerate it rather than editing it.\n"
)


def code_files():
    """The custom-code files of a compact export, by file name.

    Returns
    -------
    dict
        Source of ``configuration_skill_student.py`` and
        ``modeling_skill_student.py``.

    Example
    -------
    >>> files = code_files()
    >>> sorted(files)
    ['configuration_skill_student.py', 'modeling_skill_student.py']
    >>> any("speechbrain_skill" in line for line in files[
    ...     "modeling_skill_student.py"].splitlines() if "import" in line
    ...     and not line.lstrip().startswith(">>>"))
    False
    """
    header = GENERATED.format(version=__version__)
    config_name = f"{CODE_PACKAGE}.{CONFIG_MODULE}"
    return {
        f"{CONFIG_MODULE}.py": header + bundle_module(config_name),
        f"{MODEL_MODULE}.py": header
        + bundle_module(
            f"{CODE_PACKAGE}.{MODEL_MODULE}", relative={config_name: CONFIG_MODULE}
        ),
    }


def export_problems(student):
    """Why a student cannot be exported compactly (empty if it can).

    Arguments
    ---------
    student : PrunableSSLEncoder
        The student.

    Returns
    -------
    list of str

    Example
    -------
    >>> from speechbrain_skill.lobes.student import PrunableSSLEncoder, StudentConfig
    >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16, prune_heads=True)
    >>> export_problems(PrunableSSLEncoder(config))
    ['the student still has gates (heads); materialise it with prune() first']
    """
    student = unwrap(student)
    gated = student.config.prunable_structures
    if gated:
        return [
            f"the student still has gates ({', '.join(gated)}); "
            "materialise it with prune() first"
        ]
    return []


def compact_config(student_config):
    """The ``config.json`` document of a compact export.

    Arguments
    ---------
    student_config : StudentConfig
        Architecture of a gate-free student.

    Returns
    -------
    dict

    Example
    -------
    >>> from speechbrain_skill.lobes.student import StudentConfig
    >>> doc = compact_config(StudentConfig.uniform("wavlm", 32, 2, 4, 64, 16))
    >>> doc["model_type"], doc["num_hidden_layers"], doc["auto_map"]["AutoModel"]
    ('skill_student', 2, 'modeling_skill_student.SkillStudentModel')
    """
    from speechbrain_skill.export.hf_code.configuration_skill_student import (
        SkillStudentConfig,
    )

    config = SkillStudentConfig(
        student=student_config.to_dict(),
        architectures=[MODEL_CLASS],
        auto_map={
            "AutoConfig": f"{CONFIG_MODULE}.{CONFIG_CLASS}",
            "AutoModel": f"{MODEL_MODULE}.{MODEL_CLASS}",
        },
    )
    return config.to_dict()


def save_hf_compact(student, directory, readme=None):
    """Write the compact Hugging Face export of a student.

    Arguments
    ---------
    student : PrunableSSLEncoder
        A gate-free student (pruned or not; a DDP wrapper is unwrapped).
    directory : str or os.PathLike
        Output folder (created).
    readme : str, optional
        Model card.

    Returns
    -------
    str
        The folder.

    Example
    -------
    >>> import tempfile, os
    >>> from speechbrain_skill.lobes.student import PrunableSSLEncoder, StudentConfig
    >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16)
    >>> path = save_hf_compact(PrunableSSLEncoder(config), tempfile.mkdtemp())
    >>> sorted(os.listdir(path))  # doctest: +NORMALIZE_WHITESPACE
    ['config.json', 'configuration_skill_student.py', 'model.safetensors',
     'modeling_skill_student.py', 'preprocessor_config.json']
    """
    student = unwrap(student)
    problems = export_problems(student)
    if problems:
        raise ValueError("No compact export: " + "; ".join(problems) + ".")
    return write_model_folder(
        directory,
        compact_config(student.config),
        tensors=student.state_dict(),
        preprocessor=preprocessor_config(do_normalize=False),
        files=code_files(),
        readme=readme,
    )
