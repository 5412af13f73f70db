"""SpeechBrain's recipe consistency checks, applied to every recipe of the project.

SpeechBrain's repository checks its recipes from ``tests/recipes/*.csv``
(``tests/consistency/test_recipe.py`` and ``test_yaml.py`` there): every
recipe yaml is listed with debug flags, the listed files exist, and every
top-level yaml key is used (``check_yaml_vs_script`` in
``tests/utils/check_yaml.py``). The rule, as implemented here:

* the keys are the top-level ``key:`` lines of the yaml, except comment
  lines, lines with ``!!`` or ``!apply`` and ``Pretrainer`` declarations;
* a key is used when a ``!ref <key...>`` on a later line refers to it, when
  the recipe's script reads it (``hparams["key"]``, ``hparams.key``,
  ``modules.key``, ``getattr(self.hparams, "key"``, ``hparams.get("key"``),
  or when it is a SpeechBrain run option (the ``Brain`` reads those from the
  hparams).

Only the recipe's own script counts: a key read somewhere in the library is
not used. The project adds: ``data_folder: !PLACEHOLDER`` and
``output_folder: results/<name>/<seed>`` in every yaml.
"""

import re

import pytest
from recipe_runner import REPO, recipe_rows
from speechbrain.utils.run_opts import RunOptions

ROWS = recipe_rows()
RUN_OPTIONS = frozenset(RunOptions().as_dict())
SCRIPT_READS = (
    '["{}"]',
    "hparams.{}",
    "modules.{}",
    'attr(self.hparams, "{}"',
    'hparams.get("{}"',
)


def declared_keys(yaml_text):
    """Top-level keys of a recipe yaml that no later ``!ref`` uses."""
    keys = []
    for line in yaml_text.splitlines():
        line = line.rstrip()
        if not line or line.startswith("#") or "parameter_transfer.Pretrainer" in line:
            continue
        top_level = line[0] not in " \t"
        if ":" in line and top_level and "!!" not in line and "!apply" not in line:
            keys.append(line[: line.find(":")])
        if "!ref" in line:
            for chunk in line.split("<")[1:]:
                name = chunk.split(">")[0].split("[")[0]
                if name in keys:
                    keys.remove(name)
    return keys


def read_by_script(key, script_text):
    """Whether the script reads ``key`` in one of the accepted forms."""
    for form in SCRIPT_READS:
        pattern = re.escape(form.format(key))
        if form.endswith("{}"):
            pattern += r"(?![A-Za-z0-9_])"
        if re.search(pattern, script_text):
            return True
    return False


def unused_yaml_keys(hparam_file, script_file):
    """Keys of ``hparam_file`` used neither by the yaml nor by ``script_file``."""
    script = (REPO / script_file).read_text(encoding="utf-8")
    yaml_text = (REPO / hparam_file).read_text(encoding="utf-8")
    return [
        key
        for key in declared_keys(yaml_text)
        if key not in RUN_OPTIONS and not read_by_script(key, script)
    ]


def test_the_rule_on_a_small_example(tmp_path):
    (tmp_path / "h.yaml").write_text(
        "# comment: x\n"
        "seed: 1\n"
        "__set_seed: !apply:torch.manual_seed [!ref <seed>]\n"
        "lr: 0.1\n"
        "opt: !name:torch.optim.Adam\n"
        "    lr: !ref <lr>\n"
        "unused: 3\n"
        "read: 4\n"
        "prefix: 5\n"
        "max_grad_norm: 5.0\n"
    )
    (tmp_path / "train.py").write_text(
        'opt = hparams["opt"]\nx = hparams["read"]\ny = hparams.prefix_more\n'
    )
    unused = unused_yaml_keys(tmp_path / "h.yaml", tmp_path / "train.py")
    assert unused == ["unused", "prefix"]


def test_every_recipe_yaml_is_listed_with_debug_flags():
    listed = {row["Hparam_file"] for row in ROWS}
    found = {
        str(path.relative_to(REPO))
        for path in (REPO / "recipes").rglob("hparams/*.yaml")
    }
    assert found == listed
    assert all(row["test_debug_flags"] for row in ROWS)
    assert all(row["Task"] and row["Dataset"] for row in ROWS)


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row["id"])
def test_listed_files_exist(row):
    for field in ("Script_file", "Hparam_file", "Data_prep_file", "Readme_file"):
        assert (REPO / row[field]).is_file(), f"{row['id']}: {row[field]}"


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row["Hparam_file"])
def test_every_yaml_key_is_used_by_the_yaml_or_the_script(row):
    unused = unused_yaml_keys(row["Hparam_file"], row["Script_file"])
    assert not unused, f"{row['Hparam_file']}: keys not used: {unused}"


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row["Hparam_file"])
def test_placeholder_data_folder_and_seeded_output_folder(row):
    text = (REPO / row["Hparam_file"]).read_text()
    assert "data_folder: !PLACEHOLDER" in text
    assert re.search(r"^output_folder: !ref results/\S+/<seed>", text, re.MULTILINE)
