"""Labelling: the annotate stage's hand-off, the labelling page in a real browser (Debian's
headless Chromium driven by playwright), and Label Studio's exports read back."""
import csv
import json
import shutil
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from conftest import ROOT, run_script, tiny_params, venv_env, write_params

sys.path.insert(0, str(ROOT))
from maskinspect import CLASSES  # noqa: E402
from maskinspect.errors import PipelineError  # noqa: E402
from maskinspect.labels import read_labels  # noqa: E402

EXPORTS = Path(__file__).parent / "data" / "label-studio"
CHROMIUM = shutil.which("chromium")
EXPECTED = {"line-a-000120": "no_mask", "line-a-000145": "bad", "line-b-000031": "good"}


# -- Label Studio exports ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["export-full.json", "export-min.json", "export.csv"])
def test_label_studio_exports_read_back_as_labels(name):
    """Full JSON, JSON_MIN and CSV as Label Studio writes them: the cancelled annotation ignored,
    the unlabelled task left out, the uploaded file's hash prefix dropped."""
    got = {lab.frame_id: lab.label for lab in read_labels(EXPORTS / name)}
    assert got == EXPECTED


def test_annotators_who_disagree_are_one_error(tmp_path):
    tasks = json.loads((EXPORTS / "export-full.json").read_text())
    second = json.loads(json.dumps(tasks[0]["annotations"][0]))
    second["id"], second["result"][0]["value"]["choices"] = 99, ["bad"]
    tasks[0]["annotations"].append(second)
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    with pytest.raises(PipelineError, match=r"task 3: line-a-000120 is 'bad' here but 'no_mask' at .*annotators disagree"):
        read_labels(tmp_path / "export.json")


def test_a_file_that_is_no_export_is_named(tmp_path):
    (tmp_path / "export.json").write_text('{"not": "a list"}')
    with pytest.raises(PipelineError, match=r"export.json: not a Label Studio JSON export"):
        read_labels(tmp_path / "export.json")


# -- the hand-off --------------------------------------------------------------------------------

@pytest.fixture()
def handoff(demo_data, tmp_path):
    """A checkout-like folder where annotate stopped: 3 of 10 frames labelled."""
    params = tiny_params()
    params["data"]["labels"] = "data/labels/labels.csv"
    write_params(tmp_path / "params.yaml", params)
    truth = {r["frame_id"]: r["label"] for r in csv.DictReader((demo_data / "truth.csv").open())}
    ids = list(truth)
    selected, test = ids[10:16], ids[60:64]
    (tmp_path / "selected.csv").write_text("frame_id,rank\n" + "".join(f"{i},{k}\n" for k, i in enumerate(selected)))
    (tmp_path / "test.csv").write_text("frame_id\n" + "".join(f"{i}\n" for i in test))
    labels = tmp_path / "data" / "labels" / "labels.csv"
    labels.parent.mkdir(parents=True)
    done = [selected[1], test[2], ids[0]]  # ids[0]: a row for a frame not asked for, which must stay
    labels.write_text("frame_id,label\n" + "".join(f"{i},{truth[i]}\n" for i in done))
    result = annotate(tmp_path, demo_data)
    assert result.returncode == 1
    order = [i for i in selected + test if i not in done]
    return tmp_path, truth, order, labels, result


def annotate(work, demo_data):
    return run_script("annotate.py", "--selected", "selected.csv", "--test-sample", "test.csv",
                      "--frames", *sorted((demo_data / "frames").glob("*.npy")),
                      "--videos", *sorted((demo_data / "videos").glob("*.mp4")), "--labels", "data/labels/labels.csv",
                      "--train-labels", "data/labels/videos-train.csv", "--test-labels", "data/labels/videos-test.csv",
                      cwd=work, check=False)


def test_the_hand_off_holds_the_frames_in_labelling_order(handoff):
    work, _truth, order, _labels, result = handoff
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "8 of 10 frames lack labels: run `maskinspect label`" in lines[0]
    folder = work / "data" / "labels" / "to_label"
    queue = json.loads((folder / "queue.json").read_text())
    assert [f["frame_id"] for f in queue["frames"]] == order  # the coreset's order, then the test sample
    assert [f["set"] for f in queue["frames"]] == ["train"] * 5 + ["test"] * 3
    assert all(f["video"] in f["frame_id"] and f["time"] is not None for f in queue["frames"])
    for fid in order:
        assert Image.open(folder / "images" / f"{fid}.png").size == (240, 240)
        strip = Image.open(folder / "context" / f"{fid}.png")
        assert strip.height == 96 and strip.width >= 3 * 96  # at least a neighbour each side, or two on one
    # Label Studio: the tasks point at the images under the checkout; one single-choice control.
    tasks = json.loads((folder / "label-studio" / "tasks.json").read_text())
    assert [t["data"]["frame_id"] for t in tasks] == order
    assert tasks[0]["data"]["image"] == f"/data/local-files/?d=data/labels/to_label/images/{order[0]}.png"
    config = ET.fromstring((folder / "label-studio" / "label_config.xml").read_text())
    choices = config.find("Choices")
    assert choices.get("name") == "label" and choices.get("toName") == "image"
    assert [c.get("value") for c in choices.findall("Choice")] == list(CLASSES)
    todo = list(csv.DictReader((work / "data" / "labels" / "to_label.csv").open()))
    assert [r["frame_id"] for r in todo] == order


# -- the page, in a browser ----------------------------------------------------------------------

def start_server(work):
    process = subprocess.Popen([str(ROOT / ".venv" / "bin" / "maskinspect"), "label", "--port", "0"], cwd=work,
                               stderr=subprocess.PIPE, text=True, env=venv_env())
    line = process.stderr.readline()
    if "open http://" not in line:
        process.kill()
        raise AssertionError(f"the server did not start: {line}{process.stderr.read()}")
    return process, line.split("open ")[1].split()[0]


def saved(labels):
    return {r["frame_id"]: r["label"] for r in csv.DictReader(labels.open()) if r["label"]}


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_labelling_page_by_keyboard_survives_a_killed_server(handoff, demo_data):
    from playwright.sync_api import sync_playwright

    work, truth, order, labels, _ = handoff
    before = saved(labels)
    key = {c: str(i + 1) for i, c in enumerate(CLASSES)}
    server, url = start_server(work)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']")
            assert page.get_attribute("body", "data-frame") == order[0]
            # Label three frames by keyboard; each answer is in the file at once.
            for n, fid in enumerate(order[:3]):
                page.wait_for_selector(f"body[data-frame='{fid}']")
                page.keyboard.press(key[truth[fid]])
                page.wait_for_function(f"document.title.startsWith('{n + 1}/')")
                assert saved(labels) == before | {f: truth[f] for f in order[:n + 1]}
            # A wrong answer, undone: the file holds no label for that frame again.
            wrong = next(c for c in CLASSES if c != truth[order[3]])
            page.keyboard.press(key[wrong])
            page.wait_for_function("document.title.startsWith('4/')")
            assert saved(labels)[order[3]] == wrong
            page.keyboard.press("u")
            page.wait_for_function("document.title.startsWith('3/')")
            assert order[3] not in saved(labels) and page.get_attribute("body", "data-frame") == order[3]
            # Back goes to the frame before; skip moves on without a label.
            page.keyboard.press("ArrowLeft")
            assert page.get_attribute("body", "data-frame") == order[2]
            page.keyboard.press("ArrowRight")
            assert page.get_attribute("body", "data-frame") == order[3]
            assert "3 of 8 labelled" in page.inner_text("#progress")

            # The server dies half-way; a new one resumes where the labelling stopped.
            server.send_signal(signal.SIGKILL)
            server.wait()
            server, url = start_server(work)
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']")
            assert page.get_attribute("body", "data-frame") == order[3]
            for fid in order[3:]:
                page.wait_for_selector(f"body[data-frame='{fid}']")
                page.keyboard.press(key[truth[fid]])
            page.wait_for_function("document.title.startsWith('8/')")
            assert page.is_visible("#done") and errors == []
            counts = page.inner_text("#progress")
            for c in CLASSES:
                assert f"{c} {sum(1 for f in order if truth[f] == c)}" in counts
            browser.close()
    finally:
        server.kill()
        server.wait()
    assert saved(labels) == before | {f: truth[f] for f in order}
    assert annotate(work, demo_data).returncode == 0  # the build carries on from annotate


def test_a_labels_file_edited_into_nonsense_is_one_line(handoff):
    work, _truth, order, labels, _ = handoff
    labels.write_text(labels.read_text() + f"{order[0]},torn\n")
    result = subprocess.run([str(ROOT / ".venv" / "bin" / "maskinspect"), "label", "--port", "0"], cwd=work,
                            capture_output=True, text=True, env=venv_env(), timeout=60)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert f"labels.csv line 5: unknown label 'torn' for {order[0]}" in lines[0]


def test_an_unknown_frame_is_refused_and_nothing_is_written(handoff):
    import urllib.error
    import urllib.request

    work, _truth, _order, labels, _ = handoff
    before = labels.read_bytes()
    server, url = start_server(work)
    try:
        request = urllib.request.Request(url + "api/label", data=json.dumps({"frame_id": "demo-09-000001",
                                         "label": "good"}).encode(), headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(request, timeout=10)
        assert failed.value.code == 400
        assert "frame 'demo-09-000001' is not among the frames to label" in json.loads(failed.value.read())["error"]
    finally:
        server.kill()
        server.wait()
    assert labels.read_bytes() == before
