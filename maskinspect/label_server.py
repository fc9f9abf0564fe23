"""`maskinspect label`: the labelling page, served on the loopback interface.

It shows the frames of the annotate stage's hand-off (maskinspect/handoff.py) in their order,
and saves every answer at once into the labels file (data.labels, a frame_id,label CSV): the
file is rewritten atomically, other rows and columns kept, so closing the page or killing the
server loses nothing, and the page resumes at the first frame without a label.

    GET  /                     the page (maskinspect/label_page.html)
    GET  /api/state            the queue, the labels so far, the classes
    GET  /images/<id>.png      a frame large;  /context/<id>.png  its neighbours
    POST /api/label            {"frame_id": ..., "label": "bad" | "good" | "no_mask" | ""}
"""
from __future__ import annotations

import csv
import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from . import CLASSES
from .atomic import write_csv
from .errors import PipelineError
from .label_studio import is_export
from .labels import check, read_csv_labels

PAGE = Path(__file__).with_name("label_page.html")


def read_queue(folder: Path) -> list[dict]:
    path = folder / "queue.json"
    try:
        queue = json.loads(path.read_text())
        frames = queue["frames"]
        if not all(isinstance(f, dict) and f.get("frame_id") for f in frames):
            raise ValueError("a frame without frame_id")
    except FileNotFoundError:
        raise PipelineError(f"{path}: no frames to label (the annotate stage writes it when frames lack "
                            f"labels: run the build first)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PipelineError(f"{path}: not a labelling queue ({exc}); run the build again to rewrite it") from None
    return frames


class LabelsFile:
    """The labels CSV, read once and rewritten whole (atomically) on every answer."""

    def __init__(self, path: Path, queue_ids: list[str]):
        if path.is_dir() or is_export(path):
            raise PipelineError(f"{path}: data.labels is {'a folder' if path.is_dir() else 'a Label Studio export'}; "
                                f"the page saves into a frame_id,label CSV: set data.labels to one (e.g. "
                                f"data/labels/labels.csv) and keep the other as it is")
        self.path = path
        self.known = set(queue_ids)
        self.lock = threading.Lock()
        self.header: list[str] = ["frame_id", "label"]
        self.rows: list[dict] = []
        if path.exists():
            check(read_csv_labels(path))  # a file edited into nonsense is one line, before anything is served
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                self.header = list(reader.fieldnames or self.header)
                self.rows = list(reader)

    def labels(self) -> dict[str, str]:
        return {r["frame_id"].strip(): r["label"].strip() for r in self.rows if (r.get("label") or "").strip()}

    def set(self, fid: str, label: str) -> dict[str, str]:
        if fid not in self.known:
            raise PipelineError(f"frame {fid!r} is not among the frames to label")
        if label and label not in CLASSES:
            raise PipelineError(f"unknown label {label!r} (labels are {', '.join(CLASSES)})")
        with self.lock:
            row = next((r for r in self.rows if r["frame_id"].strip() == fid), None)
            if row is None:
                row = {k: "" for k in self.header} | {"frame_id": fid}
                self.rows.append(row)
            row["label"] = label
            write_csv(self.path, self.header, [[r.get(k, "") for k in self.header] for r in self.rows])
            return self.labels()


def make_handler(folder: Path, frames: list[dict], store: LabelsFile, labels_name: str):
    ids = {f["frame_id"] for f in frames}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # one line per request would bury the server's own messages
            pass

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj) -> None:
            self._send(status, json.dumps(obj).encode(), "application/json")

        def do_GET(self):  # noqa: N802 - http.server's name
            path = self.path.split("?")[0]
            if path == "/":
                return self._send(200, PAGE.read_bytes(), "text/html; charset=utf-8")
            if path == "/api/state":
                return self._json(200, {"frames": frames, "labels": store.labels(), "classes": list(CLASSES),
                                        "labels_file": labels_name})
            kind, _, name = path.strip("/").partition("/")
            if kind in ("images", "context") and name.endswith(".png") and name[:-4] in ids:
                return self._send(200, (folder / kind / name).read_bytes(), "image/png")
            return self._json(404, {"error": f"no {path}"})

        def do_POST(self):  # noqa: N802
            if self.path != "/api/label":
                return self._json(404, {"error": f"no {self.path}"})
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                labels = store.set(str(body.get("frame_id", "")), str(body.get("label") or ""))
            except (ValueError, AttributeError):
                return self._json(HTTPStatus.BAD_REQUEST, {"error": "expected JSON {frame_id, label}"})
            except PipelineError as exc:
                return self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            except OSError as exc:
                return self._json(HTTPStatus.INTERNAL_SERVER_ERROR,
                                  {"error": f"{store.path}: cannot save ({exc.strerror}); the answer was not saved"})
            return self._json(200, {"labels": labels})

    return Handler


def serve(folder: Path, labels_path: Path, port: int, say) -> None:
    """Serve the page until interrupted; `say` gets the address once the socket listens."""
    frames = read_queue(folder)
    store = LabelsFile(labels_path, [f["frame_id"] for f in frames])
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(folder, frames, store, str(labels_path)))
    done = sum(1 for f in frames if f["frame_id"] in store.labels())
    say(f"{len(frames)} frames to label ({done} done), saved to {labels_path} as you go: "
        f"open http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)")
    try:
        server.serve_forever()
    finally:
        server.server_close()
