#!/usr/bin/env python3
"""What pruning kept, per layer and structure, for one or more pruned students.

Reads each student's ``config.json`` (a materialised student folder, e.g. a
quick start's ``pruned_student``) and the teacher's shape, and prints per
transformer layer the heads and FFN units kept, the conv channels kept, and the
share of each structure type's parameters that was removed::

    python benchmarks/pruned_structure.py builtin:whisper-wavlm \\
        /tmp/seeds/seed_1986/pruned_student /tmp/seeds/seed_2/pruned_student
"""

import argparse
import json
from pathlib import Path

from speechbrain_skill.lobes.hf_ssl import load_hf_ssl_model


def describe(teacher_config, student_config):
    """Rows (layer, heads kept, FFN units kept) and removed shares per type."""
    heads = [len(h) for h in student_config["attention_heads"]]
    ffn = [
        d if present else 0
        for d, present in zip(student_config["ffn_dims"], student_config["ffn_present"])
    ]
    t_heads = teacher_config.num_attention_heads
    t_ffn = teacher_config.intermediate_size
    t_conv = list(teacher_config.conv_dim)
    layers = teacher_config.num_hidden_layers
    removed = {
        "heads": 1 - sum(heads) / (t_heads * layers),
        "ffn_units": 1 - sum(ffn) / (t_ffn * layers),
        "conv_channels": 1 - sum(student_config["conv_channels"]) / sum(t_conv),
    }
    return list(zip(range(1, layers + 1), heads, ffn)), removed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("teacher")
    parser.add_argument("students", nargs="+")
    args = parser.parse_args()
    teacher = load_hf_ssl_model(args.teacher).config
    for folder in args.students:
        config = json.loads((Path(folder) / "config.json").read_text())
        rows, removed = describe(teacher, config)
        print(f"## {folder}")
        conv = list(teacher.conv_dim)
        print(f"conv channels kept: {config['conv_channels']} of {conv}")
        heads, units = teacher.num_attention_heads, teacher.intermediate_size
        print(f"| layer | heads kept (of {heads}) | FFN units kept (of {units}) |")
        print("|---|---|---|")
        for layer, h, f in rows:
            print(f"| {layer} | {h} | {f} |")
        print("removed: " + ", ".join(f"{k} {v:.1%}" for k, v in removed.items()))


if __name__ == "__main__":
    main()
