"""The build report: one self-contained HTML page a person opens (dist/report.html).

Every picture is inside the page (data: URIs), so the page can be mailed or attached to a
release and still show everything. No time or host in it: the same build gives the same bytes.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np

# One colour per class, everywhere in the report (borders, points, legend); roles (selected, test)
# are shapes, never colours.
CLASS_COLOURS = {"bad": "#d62728", "good": "#2ca02c", "no_mask": "#1f77b4"}
UNLABELLED = "#b0b0b0"
THUMB = 64          # stored frames are 64 px in the published recipe; thumbnails are drawn at 2x
# metrics/summary.json's keys as a person reads them
HEADLINE_NAMES = {
    "bal_acc_float": "balanced accuracy, float model (PyTorch)",
    "bal_acc_int8": "balanced accuracy, int8 model, stored frames",
    "bal_acc_camera": "balanced accuracy, int8 model, through the camera's input path",
    "bad_recall": "recall of defective masks (bad), int8, stored frames",
    "bad_recall_camera": "recall of defective masks (bad), int8, camera path",
    "model_bytes": "model size, bytes",
    "arena_bytes": "tensor arena on the camera, bytes",
    "mops": "work per frame, MOps (2 x MACs)",
    "latency_ms": "latency on the H7 at 480 MHz, ms (calibrated on the 2020 model)",
}


def legend() -> str:
    """The class colours, as the report uses them."""
    items = "".join(f'<span class="key"><span class="swatch" style="background:{c}"></span>{esc(k)}</span>'
                    for k, c in CLASS_COLOURS.items())
    return f'<p class="legend" role="note">Colours: {items}</p>'


def headline(summary: dict) -> str:
    rows = [(esc(HEADLINE_NAMES.get(k, k)), esc(v), f"<code>{esc(k)}</code>") for k, v in summary.items()]
    return table(["figure", "value", "key in metrics/summary.json"], rows)


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def _png_uri(buf: io.BytesIO) -> str:
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def png_uri(pixels: np.ndarray) -> str:
    """An RGB frame as a PNG data: URI (lossless: what the model saw, pixel for pixel)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG", optimize=False)
    return _png_uri(buf)


def figure_uri(fig, plt) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})  # no version in the bytes
    plt.close(fig)
    return _png_uri(buf)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


@dataclass
class Prediction:
    label: str
    confidence: float


def predictions(scores: np.ndarray, classes: Sequence[str]) -> list[Prediction]:
    p = softmax(np.asarray(scores, dtype=np.float64))
    return [Prediction(classes[i], round(float(row[i]), 2)) for row, i in zip(p, p.argmax(axis=1))]


def table(header: Sequence[str], rows: Sequence[Sequence], cls: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def confusion_table(actual: Sequence[str], predicted: Sequence[str], classes: Sequence[str], title: str) -> str:
    from maskinspect.model.evaluation import confusion

    matrix = confusion(actual, predicted, classes)
    rows = [[f"<b>{esc(c)}</b>"] + [f'<span class="{"hit" if i == j else ("miss" if n else "")}">{n}</span>'
                                    for j, n in enumerate(matrix[i])] for i, c in enumerate(classes)]
    return f"<figure><figcaption>{esc(title)}</figcaption>" + table(["actual \\ predicted", *classes], rows,
                                                                     "confusion") + "</figure>"


def thumb(pixels: np.ndarray, caption: str, border: str = "#999", title: str = "") -> str:
    return (f'<figure class="thumb" title="{esc(title)}"><img src="{png_uri(pixels)}" width="{2 * THUMB}" '
            f'height="{2 * THUMB}" alt="{esc(title or caption)}" style="border-color:{border}">'
            f"<figcaption>{caption}</figcaption></figure>")


def curve_figure(series: dict[str, tuple[np.ndarray, np.ndarray]], title: str, xlabel: str) -> str:
    """A small line chart (matplotlib, Agg) of one or more series, as a data: URI."""
    from maskinspect.report.plots import _figure

    plt, fig = _figure(5.2, 3.0)
    ax = fig.add_subplot(1, 1, 1)
    for name, (x, y) in series.items():
        ax.plot(x, y, label=name, linewidth=1.2)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return f'<img class="chart" src="{figure_uri(fig, plt)}" width="520" height="300" alt="{esc(title)}">'


MARKERS = {"selected": ("o", "selected to label"), "test": ("s", "test sample"), "other": (".", "not labelled")}


def embedding_map(xy: np.ndarray, labels: Sequence[str | None], roles: Sequence[str], thumbs: dict[int, np.ndarray]) -> str:
    """Every frame at its embedding's first two principal components: colour its class (grey when
    not labelled), shape its role, with axes and a legend; thumbnails drawn for a sample only."""
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    from maskinspect.report.plots import _figure

    plt, fig = _figure(9.0, 6.6)
    ax = fig.add_subplot(1, 1, 1)
    for role in ("other", "test", "selected"):  # labelled on top
        for cls, colour in [*CLASS_COLOURS.items(), (None, UNLABELLED)]:
            idx = [i for i in range(len(xy)) if roles[i] == role and labels[i] == cls]
            if idx:
                marker, _ = MARKERS[role]
                ax.scatter(xy[idx, 0], xy[idx, 1], s=8 if role == "other" else 26, c=colour, marker=marker,
                           linewidths=0.4, edgecolors="black" if role != "other" else "none", alpha=0.9)
    for i, pixels in thumbs.items():
        box = AnnotationBbox(OffsetImage(pixels, zoom=0.45), xy[i], frameon=True, pad=0.15,
                             bboxprops={"edgecolor": CLASS_COLOURS.get(labels[i], UNLABELLED), "linewidth": 1.5})
        ax.add_artist(box)
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=c, label=k) for k, c in CLASS_COLOURS.items()]
    handles += [plt.Line2D([], [], marker=m, linestyle="", color="white", markeredgecolor="black", label=name)
                for m, name in MARKERS.values()]
    ax.legend(handles=handles, loc="best", fontsize=8, framealpha=0.9)
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.grid(alpha=0.25)
    fig.tight_layout()
    return f'<img class="chart" src="{figure_uri(fig, plt)}" width="900" height="660" alt="embedding map">'


STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
table.confusion td{text-align:right}.hit{font-weight:bold;color:#2ca02c}.miss{font-weight:bold;color:#d62728}
figure{display:inline-block;margin:6px;vertical-align:top}figcaption{font-size:12px}
.thumb img{image-rendering:pixelated;border:3px solid #999}.thumb figcaption{max-width:150px}
.wrong{color:#d62728;font-weight:bold}.note{color:#666;font-size:13px}
.legend .key{margin-right:14px}.swatch{display:inline-block;width:12px;height:12px;margin-right:4px;
vertical-align:middle;border:1px solid #555}.card{display:inline-block;border:1px solid #eee;margin:4px;padding:2px}
.card p{font-size:12px;margin:2px 6px;max-width:300px}
"""


def page(title: str, sections: Sequence[tuple[str, str]]) -> str:
    toc = " · ".join(f'<a href="#s{i}">{esc(name)}</a>' for i, (name, _) in enumerate(sections)) + legend()
    body = "".join(f'<h2 id="s{i}">{esc(name)}</h2>{content}' for i, (name, content) in enumerate(sections))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<link rel="icon" href="data:,"><style>{STYLE}</style></head><body><h1>{esc(title)}</h1>'
            f"<p>{toc}</p>{body}</body></html>\n")
