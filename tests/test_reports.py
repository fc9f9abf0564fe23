"""Metrics, plots, experiments and the Snakemake report, on the tiny build."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import git, venv_env


def run(cwd: Path, *cmd: str) -> subprocess.CompletedProcess:
    result = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, env=venv_env())
    assert result.returncode == 0, f"{' '.join(cmd)}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def test_dvc_metrics_show_one_flat_summary_that_fits_a_terminal(tiny_build):
    metrics = json.loads(run(tiny_build, "dvc", "metrics", "show", "--json").stdout)
    workspace = next(iter(metrics.values()))["data"]
    assert list(workspace) == ["metrics/summary.json"]
    summary = workspace["metrics/summary.json"]["data"]
    assert set(summary) == {"bal_acc_float", "bal_acc_int8", "bal_acc_camera", "bad_recall", "bad_recall_camera",
                            "model_bytes", "arena_bytes", "mops", "latency_ms"}
    assert all(isinstance(v, (int, float)) for v in summary.values())  # figures only: no settings, no prose
    table = run(tiny_build, "dvc", "metrics", "show").stdout
    assert max(len(line) for line in table.splitlines()) <= 160


def test_dvc_plots_render_curves_and_confusion(tiny_build, tmp_path):
    run(tiny_build, "dvc", "plots", "show", "-o", str(tmp_path / "plots"))
    html = (tmp_path / "plots" / "index.html").read_text()
    for title in ("SimCLR pretraining loss", "fine-tuning: training batches and the test sample",
                  "float model on the test sample",
                  "int8 model on the test sample"):
        assert f'"text": "{title}"' in html, title
    for image in ("embedding_map", "finetune_confusion", "int8_confusion"):
        assert f'id="metrics_{image}_png"' in html, image
        assert (tmp_path / "plots" / "static" / f"workspace_metrics_{image}.png").stat().st_size > 1000


def test_experiments_change_a_param_and_compare(tiny_build, tmp_path):
    clone = tmp_path / "exp"
    git(tiny_build, "add", "dvc.lock", "metrics")
    git(tiny_build, "commit", "-q", "--allow-empty", "-m", "results for experiments")
    git(tmp_path, "clone", "-q", str(tiny_build), str(clone))
    run(clone, "dvc", "cache", "dir", "--local", str(tiny_build / ".dvc" / "cache"))  # share the built outputs
    run(clone, "dvc", "checkout")
    out = run(clone, "dvc", "exp", "run", "-S", "firmware.calibration_ms=300", "-n", "slower-cpu")
    assert "Running stage 'firmware_check'" in out.stdout and "Running stage 'pretrain'" not in out.stdout
    table = json.loads(run(clone, "dvc", "exp", "show", "--json").stdout)
    experiments = [e for entry in table for e in (entry.get("experiments") or [])]
    runs = [r for e in experiments for r in e.get("revs", [])]
    named = [r for r in runs if r.get("name") == "slower-cpu"]
    assert named, table
    data = named[0]["data"]
    assert data["params"]["params.yaml"]["data"]["firmware"]["calibration_ms"] == 300
    latency = data["metrics"]["metrics/summary.json"]["data"]["latency_ms"]
    baseline = json.loads((tiny_build / "metrics/summary.json").read_text())["latency_ms"]
    assert latency == pytest.approx(2 * baseline, abs=0.2)  # "if the 2020 model had taken twice as long"
    # the README's way to compare runs: only the params and figures that differ (the input files'
    # hashes, columns named by path, left out), inside 160 columns
    compact = run(clone, "dvc", "exp", "show", "--only-changed", "--drop", ".*/.*").stdout
    assert "slower-cpu" in compact and "latency_ms" in compact and "calibration_ms" in compact, compact
    assert max(len(line) for line in compact.splitlines()) <= 160, compact


def test_snakemake_report_holds_the_plots(tiny_build, tmp_path):
    report = tmp_path / "report.html"
    run(tiny_build, "snakemake", "--report", str(report))
    html = report.read_text(errors="replace")
    assert len(html) > 10_000
    for name in ("finetune_confusion.png", "embedding_map.png", "int8_confusion.png"):
        assert name in html, name


# What a person sees, read in the page: every picture drawn (not blank: its pixels vary), the legend of
# class colours, and the colour of each labelled thumbnail's border.
SEEN = """() => {
  const blank = (img) => {
    const c = document.createElement("canvas"); c.width = img.naturalWidth; c.height = img.naturalHeight;
    const g = c.getContext("2d"); g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let lo = 255, hi = 0;
    for (let i = 0; i < d.length; i += 4 * 7) { const v = d[i] + d[i + 1] + d[i + 2]; lo = Math.min(lo, v); hi = Math.max(hi, v); }
    return hi - lo < 30;
  };
  return {
    images: Array.from(document.images).map((i) => [i.complete, i.naturalWidth, i.alt, blank(i)]),
    legend: Array.from(document.querySelectorAll(".legend .key")).map((k) =>
      [k.textContent.trim(), getComputedStyle(k.querySelector(".swatch")).backgroundColor]),
    borders: Array.from(document.querySelectorAll(".card")).map((c) =>
      [c.querySelector("p").textContent, getComputedStyle(c.querySelector("img")).borderTopColor]),
    captions: Array.from(document.querySelectorAll(".card figcaption")).map((f) => f.textContent),
  };
}"""


def rgb(hex_colour: str) -> str:
    return "rgb({}, {}, {})".format(*(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)))


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (scripts/venv.sh installs it)")
def test_build_report_shows_a_person_every_plot_one_colour_per_class_and_no_console_error(tiny_build, tmp_path):
    """dist/report.html in headless Chromium: every picture loads and none is blank, the legend
    gives one colour per class and every border uses it, both pictures of a wrong frame have a
    caption, the headline figures have names, and what it says is this build's."""
    import csv
    import hashlib

    import numpy as np
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from maskinspect.report.page import CLASS_COLOURS, HEADLINE_NAMES

    report = tiny_build / "dist/report.html"
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(report.as_uri(), wait_until="load")
            seen = page.evaluate(SEEN)
            sections = page.evaluate("Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
            text = page.inner_text("body")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=False)
        finally:
            browser.close()
    assert errors == []
    assert seen["images"] and all(done and width > 0 for done, width, _alt, _blank in seen["images"])
    assert [alt for _done, _w, alt, blank in seen["images"] if blank] == []
    charts = [alt for _d, _w, alt, _b in seen["images"]]
    assert "embedding map" in charts and "fine-tuning: loss" in charts and "fine-tuning: accuracy" in charts
    shot = np.asarray(Image.open(tmp_path / "report.png").convert("L"), dtype=np.float32)
    assert shot.std() > 10

    assert seen["legend"] == [[name, rgb(colour)] for name, colour in CLASS_COLOURS.items()]
    assert seen["borders"]  # the tiny build gets some test frames wrong
    for caption, border in seen["borders"]:
        true = re.search(r"true: (bad|good|no_mask)", caption).group(1)
        assert border == rgb(CLASS_COLOURS[true]), (caption, border)
    assert seen["captions"][:2] == ["stored frame", "as the camera feeds it"]
    assert len(seen["captions"]) == 2 * len(seen["borders"])

    assert sections == ["Model card", "Headline figures", "Confusion matrices: test sample",
                        "Test frames the model gets wrong", "Frames selected for labelling", "Embedding map",
                        "Training curves", "Your learning curve"]
    assert all(name in text for name in HEADLINE_NAMES.values())
    assert "the newest commit that changed the code, settings or pinned inputs the bundle is built from" in text
    assert hashlib.sha256((tiny_build / "dist/openmv.zip").read_bytes()).hexdigest() in text
    selected = sorted(csv.DictReader((tiny_build / "data/selection/selected.csv").open()), key=lambda r: int(r["rank"]))
    shown = [line.split()[1] for line in text.splitlines() if line.startswith("#") and "-" in line]
    assert shown == [r["frame_id"] for r in selected]
    assert "float (" in text and "int8 (" in text and "camera path (" in text


def test_crossval_runs_on_different_splits_join_into_what_one_run_writes(tmp_path):
    """benchmarks/combine_crossval.py: two crossval.json of some splits each give what crossval
    writes for all the splits at once (mean and spread over every fold, pooled confusion)."""
    import importlib.util
    import random
    import sys

    from conftest import ROOT
    from maskinspect import CLASSES
    from maskinspect.model.evaluation import report

    spec = importlib.util.spec_from_file_location("combine_crossval", ROOT / "benchmarks/combine_crossval.py")
    combine = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(combine)
    crossval = combine.crossval_stage()
    rng = random.Random(0)
    splits = []   # per split: per fold, (actual, predicted) stored and through the camera
    for repeat in range(3):
        folds = []
        for k in range(4):
            n = rng.randint(20, 40)
            actual = [rng.choice(CLASSES) for _ in range(n)]
            folds.append({path: (actual, [a if rng.random() < 0.85 else rng.choice(CLASSES) for a in actual])
                          for path in ("stored", "camera")})
        splits.append(folds)

    def written(chosen):   # as crossval writes it for these splits: repeats numbered from 0
        folds, pooled = [], {"stored": ([], []), "camera": ([], [])}
        for repeat, split in enumerate(chosen):
            for k, fold in enumerate(split):
                entry = {"repeat": repeat, "fold": k}
                for path, (actual, predicted) in fold.items():
                    pooled[path][0].extend(actual)
                    pooled[path][1].extend(predicted)
                    r = report(actual, predicted)
                    entry.update({(key if path == "stored" else f"camera_{key}"): r[key]
                                  for key in ("count", "accuracy", "balanced_accuracy", "recall")})
                folds.append(entry)
        return crossval.summarise({"folds": 4, "repeats": len(chosen)}, folds, pooled)

    whole = written(splits)
    joined = combine.combine([written(splits[:1]), written(splits[1:])])
    assert len(joined["per_fold"]) == 12 and joined["repeats"] == 3
    assert joined == whole   # every figure, every fold, numbered as one run numbers them
    assert whole["camera_pooled"] != whole["pooled"]  # the two paths are told apart

    (tmp_path / "a.json").write_text("{}")
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks/combine_crossval.py"),
                             str(tmp_path / "a.json")], capture_output=True, text=True, env=venv_env())
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"combine_crossval: {tmp_path / 'a.json'}: not a crossval.json (no per_fold)"]


def test_a_bundle_trained_on_its_test_sample_says_so_above_the_figures_it_shows(tiny_build, tmp_path):
    """finetune.train_on: all: the report's headline says the test sample's figures do not measure
    the bundle, and gives the cross-validation's instead; the default build's report says nothing
    of the kind. The report stage is run again on the tiny build's files, writing only to tmp."""
    import shlex

    import yaml

    params = yaml.safe_load((tiny_build / "params.yaml").read_text())
    params["finetune"]["train_on"] = "all"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "crossval.json").write_text(json.dumps({
        "camera_balanced_accuracy_mean": 0.9123, "camera_balanced_accuracy_std": 0.0456,
        "curve": {"verdict": "More labels are likely to help.", "points": []}}))
    cmd = shlex.split(yaml.safe_load((tiny_build / "dvc.yaml").read_text())["stages"]["report"]["cmd"])
    swap = {"--params": tmp_path / "params.yaml", "--report": tmp_path / "report.html", "--log": tmp_path / "report.log"}
    cmd = [str(swap[cmd[i - 1]]) if i and cmd[i - 1] in swap else arg for i, arg in enumerate(cmd)]
    run(tiny_build, *cmd, "--crossval", str(tmp_path / "crossval.json"))
    said = (tmp_path / "report.html").read_text()
    assert "trained on the test sample too (finetune.train_on: all)" in said
    assert "0.912 ± 0.046 balanced accuracy through the camera path" in said
    assert "trained on the test sample too" not in (tiny_build / "dist/report.html").read_text()
