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
from maskinspect.data.labels import read_labels  # noqa: E402

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
    assert result.returncode == 3
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
    assert result.returncode == 3 and lines == [
        "Labels needed: 8 of the 10 frames chosen for labelling have none yet (5 to train on, 3 for the test sample).",
        "  Label them in your browser:  scripts/venv.sh maskinspect label",
        "  or in Label Studio:          import data/labels/to_label/label-studio/ (README, \"Your own videos\")",
        "  or by hand:                  fill in data/labels/to_label.csv and save it as data/labels/labels.csv",
        "The answers go to data/labels/labels.csv. Then run the build again: it carries on from here."]
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
            page = browser.new_page(bypass_csp=True)  # playwright's waits evaluate strings; the page's CSP forbids it
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
        base, _, query = url.partition("?")
        request = urllib.request.Request(base + "api/label?" + query, data=json.dumps({"frame_id": "demo-09-000001",
                                         "label": "good"}).encode(), headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(request, timeout=10)
        assert failed.value.code == 400
        assert "frame 'demo-09-000001' is not among the frames to label" in json.loads(failed.value.read())["error"]
    finally:
        server.kill()
        server.wait()
    assert labels.read_bytes() == before


# -- only the user's own page gets in --------------------------------------------------------------

ATTACK_PAGE = """<!doctype html><meta charset="utf-8"><title>another site</title><script>
async function attack(target, fid, token) {
  const query = token ? `?token=${token}` : "";
  const out = {};
  // a "simple request": no preflight, as any web page can send it
  try {
    await fetch(`${target}/api/label${query}`, {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"},
                                                body: JSON.stringify({frame_id: fid, label: "bad"})});
    out.simple_write = "sent";
  } catch (e) { out.simple_write = "failed"; }
  // a JSON write: the browser asks first (preflight)
  try {
    const r = await fetch(`${target}/api/label${query}`, {method: "POST", headers: {"Content-Type": "application/json",
                          "X-Maskinspect-Token": token}, body: JSON.stringify({frame_id: fid, label: "bad"})});
    out.json_write = `answered ${r.status}`;
  } catch (e) { out.json_write = "blocked"; }
  try { const r = await fetch(`${target}/api/state${query}`); out.read = `answered ${r.status}: ${await r.text()}`; }
  catch (e) { out.read = "blocked"; }
  out.image = await new Promise((resolve) => {
    const img = new Image();
    img.onload = () => resolve(`loaded ${img.naturalWidth}x${img.naturalHeight}`);
    img.onerror = () => resolve("refused");
    img.src = `${target}/images/${fid}.png${query}`;
  });
  return out;
}
</script>"""


def serve_attack_page(folder: Path):
    """Another site, on another loopback port: a page that tries the labelling server."""
    import functools
    import http.server
    import threading

    (folder / "index.html").write_text(ATTACK_PAGE)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/venv.sh installs it)")
def test_a_page_of_another_origin_can_neither_write_labels_nor_read_frames(handoff, tmp_path):
    """Headless Chromium opens a page served from another loopback port, which tries a cross-origin
    write (a simple request, and a JSON one) and reads of the state and of a frame: without the
    token, and with it (as if it had leaked). Everything is refused; the labels file is unchanged."""
    from playwright.sync_api import sync_playwright
    from urllib.parse import parse_qs, urlsplit

    work, _truth, order, labels, _ = handoff
    before = labels.read_bytes()
    server, url = start_server(work)
    token = parse_qs(urlsplit(url).query)["token"][0]
    target = url.split("/?")[0]
    (tmp_path / "site").mkdir()
    site = serve_attack_page(tmp_path / "site")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{site.server_address[1]}/index.html")
            for known in ("", token):
                out = page.evaluate("([t, f, k]) => attack(t, f, k)", [target, order[0], known])
                assert out["simple_write"] in ("sent", "failed")  # no-cors: the page never sees the answer
                assert out["json_write"] == "blocked", out   # the preflight is never granted
                assert out["read"] == "blocked", out         # no CORS header: the answer is not readable
                assert out["image"] == "refused", out        # 403, and Cross-Origin-Resource-Policy
            browser.close()
    finally:
        site.shutdown()
        server.kill()
        server.wait()
    assert labels.read_bytes() == before


def test_a_foreign_host_or_a_missing_token_is_refused_even_from_this_machine(handoff):
    """DNS rebinding sends the attacker's host name: refused, even with the right token."""
    import http.client
    from urllib.parse import parse_qs, urlsplit

    work, _truth, order, labels, _ = handoff
    before = labels.read_bytes()
    server, url = start_server(work)
    parts = urlsplit(url)
    token = parse_qs(parts.query)["token"][0]

    def ask(method, path, host, body=None, kind="application/json"):
        conn = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=10)
        headers = {"Host": host}
        if body is not None:
            headers["Content-Type"] = kind
        conn.request(method, path, body=body, headers=headers)
        answer = conn.getresponse()
        status, text, cors = answer.status, answer.read().decode(), answer.getheader("Access-Control-Allow-Origin")
        conn.close()
        return status, text, cors

    own = f"127.0.0.1:{parts.port}"
    write = json.dumps({"frame_id": order[0], "label": "bad"})
    try:
        assert ask("GET", f"/api/state?token={token}", f"evil.example:{parts.port}")[0] == 403
        assert ask("POST", f"/api/label?token={token}", f"evil.example:{parts.port}", write)[0] == 403
        assert ask("GET", "/api/state", own)[0] == 403                                # no token
        assert ask("GET", "/api/state?token=guessed", own)[0] == 403                  # a wrong one
        assert ask("POST", f"/api/label?token={token}", own, write, "text/plain")[0] == 415   # not JSON
        assert ask("POST", f"/api/label?token={token}", own, "x" * 5000)[0] == 413            # too large
        status, text, cors = ask("OPTIONS", f"/api/label?token={token}", own)
        assert status == 405 and cors is None
        assert labels.read_bytes() == before
        status, text, cors = ask("GET", f"/api/state?token={token}", own)             # the page's own request
        assert status == 200 and cors is None and json.loads(text)["frames"][0]["frame_id"] == order[0]
    finally:
        server.kill()
        server.wait()


# -- the hand-off as a step of the build, in both front ends ------------------------------------------

@pytest.fixture()
def own_videos(demo_data, tmp_path):
    """A tiny checkout of someone's own line: the two demo videos as data/videos, no labels yet."""
    from conftest import copy_repo, init_git

    work = copy_repo(tmp_path / "repo")
    (work / "data" / "videos").mkdir(parents=True)
    for video in sorted((demo_data / "videos").glob("*.mp4")):
        shutil.copy(video, work / "data" / "videos" / video.name)
    params = tiny_params(**{"data.source": "videos"})
    params["select"].update(share=0.1, test_share=0.05)  # the defaults' rule, on 120 frames: 12 + 6
    write_params(work / "params.yaml", params)
    subprocess.run([sys.executable, "scripts/sync_dvc.py"], cwd=work, check=True, capture_output=True, env=venv_env())
    return init_git(work)


SCREEN_START = "Labels needed: 18 of the 18 frames chosen for labelling have none yet (12 to train on, 6 for the test sample)."


def test_a_build_that_needs_labels_stops_with_a_short_screen_in_both_front_ends(own_videos):
    """Snakemake: exit 3, the screen as its last lines, no Snakemake error, the hand-off written.
    DVC: the same screen from the annotate stage, and DVC's one line that the stage stopped."""
    work = own_videos
    snake = subprocess.run(["snakemake", "--cores", "2"], cwd=work, capture_output=True, text=True, env=venv_env())
    assert snake.returncode == 3, snake.stderr[-3000:]
    tail = snake.stderr.strip().splitlines()[-5:]
    assert tail[0] == SCREEN_START and tail[1] == "  Label them in your browser:  scripts/venv.sh maskinspect label"
    for noise in ("Error in rule", "RuleException", "Traceback", "CalledProcessError", "Exiting because"):
        assert noise not in snake.stdout + snake.stderr, noise
    queue = json.loads((work / "data/labels/to_label/queue.json").read_text())
    assert len(queue["frames"]) == 18 and not (work / "data/labels/videos-train.csv").exists()

    again = subprocess.run(["snakemake", "--cores", "2"], cwd=work, capture_output=True, text=True, env=venv_env())
    assert again.returncode == 3 and again.stderr.strip().splitlines()[-5] == SCREEN_START  # still waiting

    repro = subprocess.run(["dvc", "repro"], cwd=work, capture_output=True, text=True, env=venv_env())
    assert repro.returncode != 0
    lines = repro.stderr.strip().splitlines()
    assert SCREEN_START in lines and "Traceback" not in repro.stderr
    assert [x for x in lines if x.startswith("ERROR")] == [
        x for x in lines if x.startswith("ERROR: failed to reproduce 'annotate'")]


@pytest.mark.slow
@pytest.mark.nightly  # heavy: the nightly CI and `pytest -m slow`, not every .ci/run (docs/ci.md)
def test_once_labelled_the_build_carries_on_to_the_bundle(own_videos, demo_data):
    work = own_videos
    assert subprocess.run(["snakemake", "--cores", "2"], cwd=work, capture_output=True,
                          env=venv_env()).returncode == 3
    truth = {r["frame_id"]: r["label"] for r in csv.DictReader((demo_data / "truth.csv").open())}
    todo = [r["frame_id"] for r in csv.DictReader((work / "data/labels/to_label.csv").open())]
    (work / "data/labels/labels.csv").write_text("frame_id,label\n" + "".join(f"{f},{truth[f]}\n" for f in todo))
    build = subprocess.run(["snakemake", "--cores", "2"], cwd=work, capture_output=True, text=True, env=venv_env())
    assert build.returncode == 0, build.stderr[-3000:]
    assert (work / "dist/openmv.zip").is_file()
    # a dozen labels may not fill 2 folds of every class: then the cross-validation says so and stops nothing
    cv = json.loads((work / "metrics/crossval.json").read_text())
    train = [r["label"] for r in csv.DictReader((work / "data/labels/videos-train.csv").open())]
    if min(train.count(c) for c in ("bad", "good", "no_mask")) < 2:
        assert cv["skipped"].startswith("No cross-validation yet: 2 folds need at least 2 labelled frames of each")
        assert "Label more" in (work / "dist/report.html").read_text()
    else:
        assert "skipped" not in cv and 0 <= cv["balanced_accuracy_mean"] <= 1
    assert "Data and pipelines are up to date." in subprocess.run(["dvc", "status"], cwd=work, capture_output=True,
                                                                   text=True, env=venv_env()).stdout
