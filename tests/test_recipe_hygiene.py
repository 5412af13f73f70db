"""SpeechBrain recipe conventions for every recipe of the project.

Each recipe folder has train.py and README.md; each yaml has
``data_folder: !PLACEHOLDER`` and ``output_folder: results/<name>/<seed>``,
and every top-level key is used by the yaml itself, the recipe's scripts or the
library (read as ``hparams["key"]``, ``hp.get("key")`` or ``hparams.key``).
"""

import re
from pathlib import Path

import pytest
from speechbrain.core import RunOptions

REPO = Path(__file__).resolve().parent.parent
RECIPES = REPO / "recipes"
YAMLS = sorted(RECIPES.glob("*/*/hparams/*.yaml")) + sorted(
    RECIPES.glob("*/*/*/hparams/*.yaml")
)
LIBRARY_CODE = "".join(
    p.read_text() for p in (REPO / "speechbrain_skill").rglob("*.py")
)
# SpeechBrain's Brain reads run options (max_grad_norm, ckpt_interval_minutes, ...)
# from the hparams when they are not given on the command line.
RUN_OPTIONS = set(RunOptions().as_dict())
# The pipeline reads stage-specific keys as hp[f"{prefix}_steps"] etc.
STAGE_PREFIXES = ("prune_", "final_")


def _used(key, yaml_text, code):
    if key in RUN_OPTIONS:
        return True
    if f"<{key}>" in yaml_text or f"<{key}[" in yaml_text:
        return True
    if f'"{key}"' in code or f".{key}" in code:
        return True
    for prefix in STAGE_PREFIXES:
        if key.startswith(prefix) and f'{{prefix}}_{key[len(prefix) :]}"' in code:
            return True
    return False


def test_recipes_were_found():
    assert len(YAMLS) >= 10


@pytest.mark.parametrize("yaml_path", YAMLS, ids=lambda p: str(p.relative_to(RECIPES)))
def test_recipe_layout_and_every_yaml_key_is_used(yaml_path):
    folder = yaml_path.parent.parent
    for name in ("train.py", "README.md"):
        assert (folder / name).is_file(), f"{folder} lacks {name}"
    yaml_text = yaml_path.read_text()
    keys = re.findall(r"^([A-Za-z_][A-Za-z0-9_]*):", yaml_text, flags=re.MULTILINE)
    code = LIBRARY_CODE + "".join(p.read_text() for p in folder.glob("*.py"))
    unused = [
        k for k in keys if not k.startswith("__") and not _used(k, yaml_text, code)
    ]
    assert not unused, f"{yaml_path.name}: yaml keys used nowhere: {unused}"
    assert "data_folder: !PLACEHOLDER" in yaml_text
    assert re.search(
        r"^output_folder: !ref results/\S+/<seed>", yaml_text, re.MULTILINE
    )
