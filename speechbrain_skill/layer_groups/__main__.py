"""``python -m speechbrain_skill.layer_groups``: the layer-analysis command line."""

from speechbrain_skill.layer_groups.cli import main

if __name__ == "__main__":
    main()
