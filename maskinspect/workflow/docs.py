"""The documentation that is written from the code, so it cannot drift: the pipeline diagram in
README.md (between its `pipeline diagram` markers), and docs/reference.md (the stage table and the
params reference, from stages.py and params.schema.yaml).

    scripts/venv.sh python -m maskinspect.workflow.docs          # write both
    scripts/venv.sh python -m maskinspect.workflow.docs --check  # exit 1 when either is stale
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from maskinspect.workflow.declare import Folder, From, Shards, Stage
from maskinspect.workflow.stages import STAGES

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- pipeline diagram: written by python -m maskinspect.workflow.docs -->", "<!-- end of the diagram -->"
WHEN = {"always": "every build", "demo": "demo data", "images": "labelled image folders", "from_videos": "videos",
        "real": "real data", "compare": "real data, with the published model"}
# The layout's names (layout.py) that stages read, and which stages write them; the ones that come
# from outside the graph, and what the diagram calls them.
PRODUCERS = {"shards": ("extract_frames", "pack_images"), "train_shards": ("extract_frames", "pack_images"),
             "video_shards": ("extract_frames",), "indexes": ("extract_frames",),
             "camera_shards": ("camera_frames", "pack_images"), "video_files": ("render_demo",),
             "train_labels": ("annotate", "pack_images"), "test_labels": ("annotate", "pack_images"),
             "selected": ("select_frames",), "embeddings": ("embed",), "embedding_ids": ("embed",),
             "labels": ("render_demo",)}
SOURCES = {"images_dir": "labelled image folders", "test_dir": "labelled image folders",
           "labels": "your labels: the page, Label Studio, a CSV", "video_files": "your videos",
           "pretrain_init": "pinned inputs: checkpoint, 2020 model, OpenMV libtflm",
           "firmware_libraries": "pinned inputs: checkpoint, 2020 model, OpenMV libtflm",
           "calibration_model": "pinned inputs: checkpoint, 2020 model, OpenMV libtflm",
           "published_model": "pinned inputs: checkpoint, 2020 model, OpenMV libtflm"}


def _files(value) -> str:
    if isinstance(value, str):
        return value
    kind = {From: "", Shards: "shards: ", Folder: "folder: "}[type(value)]
    return f"{kind}{value.key}"


def _edges() -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(stage -> stage, source -> stage): a stage reads what another writes, by path or by name."""
    writers = {v: st.name for st in STAGES for v in st.outputs.values() if isinstance(v, str)}
    edges, outside = set(), set()
    for st in STAGES:
        if st.foreach == "videos":  # one job per video: the demo's, or yours
            edges.add(("render_demo", st.name))
            outside.add((SOURCES["video_files"], st.name))
        for value in st.inputs.values():
            sources = (writers.get(value),) if isinstance(value, str) else PRODUCERS.get(value.key, ())
            edges |= {(s, st.name) for s in sources if s and s != st.name}
            if not isinstance(value, str) and value.key in SOURCES:
                outside.add((SOURCES[value.key], st.name))
    return edges, outside


def diagram() -> str:
    """A mermaid flowchart: every stage, an edge wherever one reads what another writes (less the
    edges a longer path already draws: docs/reference.md lists every input), and the inputs from
    outside the graph."""
    import networkx as nx

    edges, outside = _edges()
    edges = set(nx.transitive_reduction(nx.DiGraph(sorted(edges))).edges)
    lines = ["```mermaid", "flowchart LR"]
    lines += [f'  {st.name}["{st.name}<br><small>{"videos" if st.foreach else WHEN[st.when]}</small>"]'
              for st in STAGES]
    for i, label in enumerate(sorted({s for s, _ in outside})):
        lines.append(f'  src{i}[("{label}")]')
        lines += [f"  src{i} -.-> {target}" for s, target in sorted(outside) if s == label]
    lines += [f"  {a} --> {b}" for a, b in sorted(edges)]
    lines.append("```")
    return "\n".join(lines)


def stage_table() -> str:
    rows = ["| stage | when | reads | writes | params |", "|---|---|---|---|---|"]
    for st in STAGES:
        reads = ", ".join(f"`{_files(v)}`" for v in st.inputs.values())
        writes = ", ".join(f"`{_files(v)}`" for v in st.outputs.values())
        rows.append(f"| **{st.name}** — {st.doc} | {WHEN[st.when]} | {reads} | {writes} | "
                    f"{', '.join(f'`{p}`' for p in st.params)} |")
    return "\n".join(rows)


def _params_rows(schema: dict, prefix: str = "") -> list[str]:
    rows = []
    for key, node in (schema.get("properties") or {}).items():
        name = f"{prefix}{key}"
        if node.get("type") == "object" and "properties" in node:
            if node.get("description"):
                rows.append(f"| `{name}` | section | {node['description']} |")
            rows += _params_rows(node, name + ".")
            continue
        kind = node.get("type") or ("one of " + ", ".join(map(str, node["enum"])) if "enum" in node else "")
        kind = " or ".join(kind) if isinstance(kind, list) else kind
        bounds = ", ".join(f"{k} {node[k]}" for k in ("minimum", "exclusiveMinimum", "maximum") if k in node)
        rows.append(f"| `{name}` | {kind}{f' ({bounds})' if bounds else ''} | {node.get('description', '')} |")
    return rows


def reference() -> str:
    schema = yaml.safe_load((ROOT / "maskinspect/workflow/params.schema.yaml").read_text())
    return "\n".join([
        "# Reference",
        "",
        "Written by `scripts/venv.sh python -m maskinspect.workflow.docs` from `maskinspect/workflow/stages.py`",
        "and `maskinspect/workflow/params.schema.yaml`; a test fails when this page and they differ.",
        "",
        "## Stages",
        "",
        "Each stage is one entry of the table in `maskinspect/workflow/stages.py`, one script `scripts/<stage>.py`,",
        "one Snakemake rule and one DVC stage. Roles named without a path come from `layout.py` (what",
        "params.yaml says about the data).",
        "",
        stage_table(),
        "",
        "## Params",
        "",
        "Every key of `params.yaml`, checked against the schema at the start of every stage: an unknown key,",
        "a wrong type or a value out of bounds fails with one line naming the key. `demo_recipe` repeats any",
        "section (or part of one) to apply over it when `data.source` is `demo`.",
        "",
        "| key | type | what |",
        "|---|---|---|",
        *_params_rows(schema),
        "",
    ])


def readme_with_diagram(text: str) -> str:
    if BEGIN not in text or END not in text:
        raise SystemExit(f"README.md: no `{BEGIN}` ... `{END}` markers for the diagram")
    head, rest = text.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{diagram()}\n{END}{tail}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 when a written page is stale; write nothing")
    args = p.parse_args(argv)
    wanted = {ROOT / "docs/reference.md": reference(),
              ROOT / "README.md": readme_with_diagram((ROOT / "README.md").read_text())}
    stale = [path for path, text in wanted.items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)}: stale: run scripts/venv.sh python -m maskinspect.workflow.docs",
                  file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(exist_ok=True)
        path.write_text(wanted[path])
        print(f"docs: wrote {path.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
