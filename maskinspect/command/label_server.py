"""`maskinspect label`: the labelling page, served on the loopback interface.

It shows the frames of the annotate stage's hand-off (maskinspect/data/handoff.py) in their order,
and saves every answer at once into the labels file (data.labels, a frame_id,label CSV): the
file is rewritten atomically, other rows and columns kept, so closing the page or killing the
server loses nothing, and the page resumes at the first frame without a label.

    GET  /                     the page (maskinspect/command/label_page.html)
    GET  /api/state            the queue, the labels so far, the classes
    GET  /images/<id>.png      a frame large;  /context/<id>.png  its neighbours
    POST /api/label            {"frame_id": ..., "label": "bad" | "good" | "no_mask" | ""}

Only the user's own page gets in (as Jupyter does it; docs/security.md has the threat model):
- a token, random per server and printed once in the URL, is required on every request (the
  page sends it as a header, and in the query of its images);
- the Host header must name the loopback address and this port (a DNS-rebinding page has
  another name);
- a request from another origin (another site, or another port on this machine) is refused: its
  Origin header, or the browser's Sec-Fetch-Site, says so; a write must be JSON
  (`Content-Type: application/json`, which no form or "simple request" can send) and small;
- no response allows another origin to read it (no CORS headers, Cross-Origin-Resource-Policy
  same-origin), and the page may not be framed.
"""
from __future__ import annotations

import csv
import hmac
import json
import secrets
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from maskinspect import CLASSES
from maskinspect.atomic import write_csv
from maskinspect.errors import PipelineError
from maskinspect.data.label_studio import is_export
from maskinspect.data.labels import check, read_labels

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
            check(read_labels(path))  # a file edited into nonsense (or out of bounds) is one line, before anything is served
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


MAX_BODY = 4096   # bytes of a POST: {"frame_id": ..., "label": ...} is far less
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Content-Security-Policy": ("default-src 'none'; img-src 'self'; script-src 'unsafe-inline'; "
                                "style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; "
                                "form-action 'none'; frame-ancestors 'none'"),
}


class Guard:
    """Who may talk to the server: the page this server printed the address of, nobody else."""

    def __init__(self, port: int, token: str | None = None):
        self.port = port
        self.token = token or secrets.token_urlsafe(24)
        self.hosts = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
        self.origins = {f"http://{host}" for host in self.hosts}

    def refusal(self, method: str, headers, query: dict[str, list[str]]) -> tuple[int, str] | None:
        """None when the request may go on; else (status, why)."""
        host = (headers.get("Host") or "").strip().lower()
        if host not in self.hosts:
            return HTTPStatus.FORBIDDEN, f"Host {host or '(none)'} is not this server's (127.0.0.1:{self.port})"
        origin = headers.get("Origin")
        if origin is not None and origin.lower() not in self.origins:
            return HTTPStatus.FORBIDDEN, f"requests from {origin} are not accepted"
        fetch_site = headers.get("Sec-Fetch-Site")
        if fetch_site is not None and fetch_site not in ("same-origin", "none"):
            return HTTPStatus.FORBIDDEN, f"a {fetch_site} request is not accepted"
        given = headers.get("X-Maskinspect-Token") or (query.get("token") or [""])[0]
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return HTTPStatus.FORBIDDEN, "no valid token: open the address `maskinspect label` printed"
        if method == "POST":
            kind = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if kind != "application/json":
                return HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "a write must be application/json"
            try:
                length = int(headers.get("Content-Length", ""))
            except ValueError:
                return HTTPStatus.LENGTH_REQUIRED, "a write needs a Content-Length"
            if not 0 <= length <= MAX_BODY:
                return HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"a write is at most {MAX_BODY} bytes"
        return None


@dataclass
class Session:
    """What one server serves: the hand-off's frames, the labels file, who may ask, the labelling
    rule of each class and, once a model exists, its guess for each frame."""
    folder: Path
    frames: list[dict]
    store: LabelsFile
    labels_name: str
    guard: Guard
    rules: dict[str, str]
    guesses: dict[str, dict]

    def state(self) -> dict:
        return {"frames": self.frames, "labels": self.store.labels(), "classes": list(CLASSES),
                "labels_file": self.labels_name, "rules": self.rules, "guesses": self.guesses}

    def image(self, path: str) -> Path | None:
        kind, _, name = path.strip("/").partition("/")
        ids = {f["frame_id"] for f in self.frames}
        if kind in ("images", "context") and name.endswith(".png") and name[:-4] in ids:
            return self.folder / kind / name
        return None


class Handler(BaseHTTPRequestHandler):
    """The page and its API; every request passes the session's Guard first."""
    session: Session  # set on the subclass serve() makes

    def log_message(self, *args):  # one line per request would bury the server's own messages
        pass

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _admitted(self, method: str) -> str | None:
        """The request's path when it may go on; None when it was answered with a refusal."""
        parts = urlsplit(self.path)
        refused = self.session.guard.refusal(method, self.headers, parse_qs(parts.query))
        if refused is not None:
            self.close_connection = True
            self._json(refused[0], {"error": refused[1]})
            return None
        return parts.path

    def do_GET(self):  # noqa: N802 - http.server's name
        path = self._admitted("GET")
        if path is None:
            return None
        if path == "/":
            return self._send(200, PAGE.read_bytes(), "text/html; charset=utf-8")
        if path == "/api/state":
            return self._json(200, self.session.state())
        image = self.session.image(path)
        if image is not None:
            return self._send(200, image.read_bytes(), "image/png")
        return self._json(404, {"error": f"no {path}"})

    def do_POST(self):  # noqa: N802
        path = self._admitted("POST")
        if path is None:
            return None
        if path != "/api/label":
            return self._json(404, {"error": f"no {path}"})
        store = self.session.store
        try:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            labels = store.set(str(body.get("frame_id", "")), str(body.get("label") or ""))
        except (ValueError, AttributeError):
            return self._json(HTTPStatus.BAD_REQUEST, {"error": "expected JSON {frame_id, label}"})
        except PipelineError as exc:
            return self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except OSError as exc:
            return self._json(HTTPStatus.INTERNAL_SERVER_ERROR,
                              {"error": f"{store.path}: cannot save ({exc.strerror}); the answer was not saved"})
        return self._json(200, {"labels": labels})

    def _refuse_method(self):
        self.close_connection = True
        self._json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"{self.command} is not served"})

    do_OPTIONS = do_PUT = do_DELETE = do_PATCH = _refuse_method  # no CORS preflight is ever granted


def model_guesses(folder: Path, frames: list[dict], model: Path | None) -> dict[str, dict]:
    """The bundle's guess for each frame to label, as the camera would make it (its sensor window,
    the firmware's scaling, TensorFlow Lite Micro), with a softmax confidence; {} without a model."""
    if model is None or not model.is_file():
        return {}
    import numpy as np
    from PIL import Image

    from maskinspect.device.camera import camera_input
    from maskinspect.device.runtime import tflm_scores
    from maskinspect.model.tflite_graph import read

    size = read(model).input().shape[1]
    sensor = np.stack([np.asarray(Image.open(folder / "images" / f"{f['frame_id']}.png").convert("RGB"))
                       for f in frames])
    scores = tflm_scores(model, camera_input(sensor, size))
    probs = np.exp(scores - scores.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    return {f["frame_id"]: {"label": CLASSES[int(p.argmax())], "confidence": round(float(p.max()), 3)}
            for f, p in zip(frames, probs)}


def serve(folder: Path, labels_path: Path, port: int, say, rules: dict[str, str] | None = None,
          model: Path | None = None) -> None:
    """Serve the page until interrupted; `say` gets the address once the socket listens. `rules`:
    the definition of each class, shown on the page; `model`: the bundle, whose guesses it shows."""
    frames = read_queue(folder)
    store = LabelsFile(labels_path, [f["frame_id"] for f in frames])
    guesses = model_guesses(folder, frames, model)
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    guard = Guard(server.server_address[1])
    session = Session(folder, frames, store, str(labels_path), guard, rules or {}, guesses)
    server.RequestHandlerClass = type("SessionHandler", (Handler,), {"session": session})
    done = sum(1 for f in frames if f["frame_id"] in store.labels())
    say(f"{len(frames)} frames to label ({done} done), saved to {labels_path} as you go: "
        f"open http://127.0.0.1:{guard.port}/?token={guard.token} (this machine only; the token lets "
        f"only your page in; Ctrl-C stops)")
    try:
        server.serve_forever()
    finally:
        server.server_close()
