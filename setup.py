"""Installation script for speechbrain-skill."""

from setuptools import find_namespace_packages, setup

with open("README.md", encoding="utf-8") as readme:
    LONG_DESCRIPTION = readme.read()

setup(
    name="speechbrain_skill",
    version="0.1.0",
    description=(
        "Similarity-aware knowledge distillation and structured pruning of "
        "speech self-supervised models, as SpeechBrain recipes"
    ),
    long_description=LONG_DESCRIPTION,
    long_description_content_type="text/markdown",
    # Namespace discovery also lists the data folders (assets/models/...), so
    # setuptools does not warn that they are importable but not packaged.
    packages=find_namespace_packages(
        include=["speechbrain_skill", "speechbrain_skill.*"]
    ),
    package_data={"speechbrain_skill": ["assets/**/*", "assets/*"]},
    include_package_data=True,
    python_requires=">=3.9",
    install_requires=[
        # No upper bounds and no exact pins: a GPU user keeps the torch build they have.
        # 2.4: the recipes' fused AdamW runs on CPU too (before 2.4: CUDA only).
        "torch>=2.4",
        "torchaudio>=2.4",
        "speechbrain>=1.1.2",
        "transformers>=4.40",
        "hyperpyyaml>=1.2",
        "scipy>=1.10",
        "soundfile>=0.12",
        "matplotlib>=3.7",
        "safetensors>=0.4",
        "tqdm",
    ],
    extras_require={
        # ONNX export (python -m speechbrain_skill.export) and its onnxruntime check.
        "export": ["onnx>=1.16", "onnxruntime>=1.18"],
        # s3prl bridge (python -m speechbrain_skill.s3prl_bridge): s3prl's runner
        # imports tensorboardX, which s3prl does not declare.
        "s3prl": ["s3prl>=0.4.18", "tensorboardX"],
        "dev": [
            "onnx>=1.16",
            "onnxruntime>=1.18",
            "pytest>=7",
            "pytest-timeout",
            "ruff>=0.6",
            "s3prl>=0.4.18",
            "tensorboardX",
            "yamllint>=1.35",
        ],
    },
)
