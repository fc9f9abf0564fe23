"""The part of a CI report that comes from this build's files (.ci/steps.sh report): the int8 model's
confusion matrix through the camera path, `bad` recall, and where the build report is.

    scripts/venv.sh python scripts/ci_report.py      # markdown on stdout

CI_REPORT_URL, where set (the workflow's artifact or job page), is where it says the report is.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    quantize = json.loads((ROOT / "metrics/quantize.json").read_text())
    camera = quantize["camera"]
    classes, matrix = camera["confusion"]["classes"], camera["confusion"]["matrix"]
    print(f"Through the camera's input path ({quantize['test_count']} test frames, int8 in TensorFlow Lite Micro): "
          f"balanced accuracy **{camera['balanced_accuracy']}**, `bad` recall **{camera['recall']['bad']}**.")
    print()
    print("| actual \\ predicted | " + " | ".join(classes) + " |")
    print("|---|" + "---:|" * len(classes))
    for name, row in zip(classes, matrix):
        print(f"| {name} | " + " | ".join(str(n) for n in row) + " |")
    print()
    where = os.environ.get("CI_REPORT_URL")
    print(f"The build report (`dist/report.html`): {where}" if where else
          "The build report is `dist/report.html`, kept with this job's files.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
