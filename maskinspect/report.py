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

CLASS_COLOURS = {"bad": "#d62728", "good": "#2ca02c", "no_mask": "#1f77b4"}
THUMB = 64          # stored frames are 64 px in the published recipe; thumbnails are drawn at 2x
MAP_SIZE = (880, 620)


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
    from .evaluation import confusion

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
    from .plots import _figure

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


def embedding_map(xy: np.ndarray, frames: np.ndarray, roles: Sequence[str], captions: Sequence[str]) -> str:
    """Thumbnails placed at their 2-D embedding (PCA): selected frames red, test frames blue."""
    w, h = MAP_SIZE
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    pos = (xy - lo) / span
    border = {"selected": "#d62728", "test": "#1f77b4", "other": "#bbbbbb"}
    items = []
    order = sorted(range(len(xy)), key=lambda i: ("other", "test", "selected").index(roles[i]))  # selected on top
    for i in order:
        x, y = int(pos[i, 0] * (w - 36)), int((1 - pos[i, 1]) * (h - 36))
        items.append(f'<img class="dot" src="{png_uri(frames[i][::2, ::2])}" width="32" height="32" '
                     f'style="left:{x}px;top:{y}px;border-color:{border[roles[i]]}" '
                     f'title="{esc(captions[i])}" alt="{esc(captions[i])}">')
    return f'<div class="map" style="width:{w}px;height:{h}px">{"".join(items)}</div>'


STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
table.confusion td{text-align:right}.hit{font-weight:bold;color:#2ca02c}.miss{font-weight:bold;color:#d62728}
figure{display:inline-block;margin:6px;vertical-align:top}figcaption{font-size:12px}
.thumb img{image-rendering:pixelated;border:3px solid #999}.thumb figcaption{max-width:150px}
.wrong{color:#d62728;font-weight:bold}.map{position:relative;border:1px solid #ccc;background:#fafafa}
.dot{position:absolute;border:2px solid;image-rendering:pixelated}.note{color:#666;font-size:13px}
"""


def page(title: str, sections: Sequence[tuple[str, str]]) -> str:
    toc = " · ".join(f'<a href="#s{i}">{esc(name)}</a>' for i, (name, _) in enumerate(sections))
    body = "".join(f'<h2 id="s{i}">{esc(name)}</h2>{content}' for i, (name, content) in enumerate(sections))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<link rel="icon" href="data:,"><style>{STYLE}</style></head><body><h1>{esc(title)}</h1>'
            f"<p>{toc}</p>{body}</body></html>\n")
