r"""Command line: export a saved student to Hugging Face, SpeechBrain and ONNX.

Example::

    python -m speechbrain_skill.export results/skill_wavlm/1986/student
    python -m speechbrain_skill.export results/x/student --output exports/x \
        --formats hf onnx
"""

import argparse
import json
import logging

from speechbrain_skill.export.exporter import (
    FORMATS,
    OPTIONAL_FORMATS,
    SUMMARY_NAME,
    export_student,
)


def main(argv=None):
    """Parse arguments, export, print the summary.

    Arguments
    ---------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    dict
        The export summary.
    """
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_skill.export", description=__doc__.split("\n")[0]
    )
    parser.add_argument("student", help="student folder (config.json + weights)")
    parser.add_argument("--output", help="output folder (default: the student's)")
    parser.add_argument(
        "--formats",
        nargs="+",
        default=list(FORMATS),
        choices=FORMATS + OPTIONAL_FORMATS,
        help="onnx_int8 (int8 ONNX for CPUs) only when named",
    )
    parser.add_argument(
        "--no_check", action="store_true", help="skip loading the exports back"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    summary = export_student(
        args.student, args.output, args.formats, check=not args.no_check
    )
    print(json.dumps(summary, indent=2))
    print(f"Summary written to {summary['folders']['student']}/{SUMMARY_NAME}")
    return summary


if __name__ == "__main__":
    main()
