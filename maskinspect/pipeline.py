"""The pipeline graph, defined once. The Snakefile builds its rules from it and dvc.yaml
is generated from it (`python scripts/sync_dvc.py`; the Snakefile rewrites dvc.yaml when
it is stale), so the two front ends cannot drift: same stages, same commands, same
inputs, outputs and params.

A stage's inputs include its script and the package modules the script computes with
(found by reading their imports), so a code change makes exactly the stages that use
the code stale, in both front ends. Plumbing that cannot change an artifact's bytes
(params validation, CLI error handling) is left out, or every stage would rebuild when
a key is added to the schema.
"""
from __future__ import annotations

import ast
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import params as params_mod
from .demo import video_names
from .errors import PipelineError
from .video import list_videos

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "maskinspect"
PLUMBING = {"maskinspect/params.py", "maskinspect/params.schema.yaml", "maskinspect/cli.py",
            "maskinspect/errors.py", "maskinspect/pipeline.py"}
ITEM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# What a stage asks a cluster for (Snakemake resources; the SLURM profile may override them).
# mem_mb in MB, runtime in minutes. Training stages ask for a GPU; MASKINSPECT_GPUS=0 asks
# for none, for clusters (or test clusters) without GPUs. Resources never change a result.
DEFAULT_RESOURCES = {"mem_mb": 2000, "runtime": 20}


def gpus() -> int:
    value = os.environ.get("MASKINSPECT_GPUS", "1")
    if not value.isdigit():
        raise PipelineError(f"MASKINSPECT_GPUS={value!r}: expected a number of GPUs (0 for none)")
    return int(value)


def training_resources(mem_mb: int, runtime: int) -> dict:
    return {"mem_mb": mem_mb, "runtime": runtime, "gpu": gpus()}


@dataclass
class Stage:
    """One step of the graph.

    Paths and the command may hold `{item}` (the key of a foreach stage, e.g. a video
    name) and `{item.path}` (its input file); both front ends substitute them.
    """
    name: str
    script: str
    args: list[str]
    deps: dict[str, str | list[str]]
    outs: dict[str, str | list[str]]
    params: list[str]
    metrics: list[str] = field(default_factory=list)     # outs that are DVC metrics (JSON)
    plots: dict[str, dict] = field(default_factory=dict)  # outs that are DVC plots: spec
    extra_code: list[str] = field(default_factory=list)  # non-Python files the stage reads
    foreach: dict[str, dict[str, str]] | None = None
    threads: int = 1
    resources: dict = field(default_factory=lambda: dict(DEFAULT_RESOURCES))

    @property
    def cmd(self) -> str:
        return " ".join(["python", self.script, *self.args])

    def code(self, root: Path = ROOT) -> list[str]:
        return sorted(set(code_deps(self.script, root)) | set(self.extra_code))

    def dep_paths(self) -> list[str]:
        return _flatten(self.deps.values())

    def out_paths(self) -> list[str]:
        return _flatten(self.outs.values())


def _flatten(values) -> list[str]:
    out: list[str] = []
    for v in values:
        out.extend(v if isinstance(v, list) else [v])
    return out


def code_deps(script: str, root: Path = ROOT) -> list[str]:
    """The script and every package module it imports, transitively (relative paths)."""
    seen: set[str] = set()
    todo = [script]
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        seen.add(rel)
        tree = ast.parse((root / rel).read_text(), filename=rel)
        is_package_module = rel.startswith(PACKAGE + "/")
        for node in ast.walk(tree):
            modules: list[str] = []
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names if a.name.split(".")[0] == PACKAGE]
            elif isinstance(node, ast.ImportFrom):
                if node.level and is_package_module:
                    base = Path(rel).parent.as_posix().replace("/", ".")
                    mod = base + ("." + node.module if node.module else "")
                elif node.module and node.module.split(".")[0] == PACKAGE:
                    mod = node.module
                else:
                    continue
                modules = [mod] + [f"{mod}.{a.name}" for a in node.names]
            for mod in modules:
                path = _module_path(mod, root)
                if path:
                    todo.append(path)
    init = f"{PACKAGE}/__init__.py"
    if any(p.startswith(PACKAGE + "/") for p in seen):
        seen.add(init)  # pins threads and vector ISA: part of every result
    return sorted(p for p in seen if p not in PLUMBING)


def _module_path(module: str, root: Path) -> str | None:
    parts = module.split(".")
    as_file = root.joinpath(*parts).with_suffix(".py")
    as_pkg = root.joinpath(*parts, "__init__.py")
    for candidate in (as_file, as_pkg):
        if candidate.is_file():
            return candidate.relative_to(root).as_posix()
    return None


# ---------------------------------------------------------------------------
# The graph

def video_items(params: dict, root: Path = ROOT) -> dict[str, dict[str, str]]:
    """Raw videos by name: rendered demo videos, or the files in data.videos_dir."""
    data = params["data"]
    if data["source"] == "demo":
        return {n: {"path": f"data/demo/videos/{n}.mp4"} for n in video_names(params["demo"]["videos"])}
    if data["source"] == "videos":
        folder = Path(data["videos_dir"])
        videos = list_videos(root / folder)
        if not videos:
            raise PipelineError(f"{folder}: no videos found (data.source is videos); put your videos there "
                                f"or set data.source: demo")
        items: dict[str, dict[str, str]] = {}
        for v in videos:
            if not ITEM_NAME.match(v.stem):
                raise PipelineError(f"{v}: rename it: video names may hold letters, digits, '.', '_' and '-' only")
            if v.stem in items:
                raise PipelineError(f"{v}: two videos named {v.stem} (different extensions)")
            items[v.stem] = {"path": (folder / v.name).as_posix()}
        return items
    return {}


def stages(params: dict, root: Path = ROOT) -> list[Stage]:
    """All stages for these params (as written in params.yaml), in topological order."""
    result = _stages(params, root)
    if params["data"]["source"] == "images" and params.get(params_mod.RECIPE):
        # DVC tracks keys as written: a stage that reads `model` also depends on images_recipe.model.
        for st in result:
            st.params = st.params + [f"{params_mod.RECIPE}.{k}" for k in st.params
                                     if _has(params[params_mod.RECIPE], k)]
    return result


def _has(tree: dict, dotted: str) -> bool:
    try:
        params_mod.get(tree, dotted)
        return True
    except (KeyError, TypeError):
        return False


def _stages(params: dict, root: Path) -> list[Stage]:
    data = params["data"]
    eff = params_mod.effective(params)
    images = data["source"] == "images"
    result: list[Stage] = []
    videos = video_items(params, root)

    if data["source"] == "demo":
        result.append(Stage(
            name="render_demo",
            script="scripts/render_demo.py",
            args=["--params", "params.yaml", "--videos-dir", "data/demo/videos", "--truth", "data/demo/truth.csv"],
            deps={},
            outs={"videos": [v["path"] for v in videos.values()], "truth": "data/demo/truth.csv"},
            params=["demo"],
        ))
    if videos:
        result.append(Stage(
            name="frames",
            script="scripts/extract_frames.py",
            args=["--params", "params.yaml", "{item.path}", "--name", "{item}",
                  "--frames", "data/frames/{item}.npy", "--index", "data/frames/{item}.csv"],
            deps={"video": "{item.path}"},
            outs={"frames": "data/frames/{item}.npy", "index": "data/frames/{item}.csv"},
            params=["frames"],
            foreach=videos,
        ))
    if images:
        common = dict(script="scripts/pack_images.py", params=["frames"])
        for part, folder, extra in (("train", data["images_dir"], ["--exclude", data["test_dir"]]),
                                    ("test", data["test_dir"], [])):
            result.append(Stage(
                name=f"pack_{part}_images",
                args=["--params", "params.yaml", folder, *extra, "--frames", f"data/frames/images-{part}.npy",
                      "--index", f"data/frames/images-{part}.csv", "--labels", f"data/labels/{part}.csv"],
                deps={"folder": folder, **({"exclude": data["test_dir"]} if extra else {})},
                outs={"frames": f"data/frames/images-{part}.npy", "index": f"data/frames/images-{part}.csv",
                      "labels": f"data/labels/{part}.csv"},
                **common,
            ))
    shards = frame_shards(params, root)
    shard_files = with_indexes(shards)
    indexes = shard_files[len(shards):]
    # Pretraining sees the frames there are to learn from; with labelled folders, the training
    # folder only (the test folder must not shape the model, even unlabelled).
    train_shards = shards[:1] if images else shards
    threads = params["runtime"]["threads"]

    pretrain_init = eff["pretrain"]["init"]
    result.append(Stage(
        name="pretrain",
        script="scripts/pretrain.py",
        args=["--params", "params.yaml", "--frames", *train_shards,
              "--out", "models/backbone.safetensors", "--loss", "metrics/pretrain_loss.csv"],
        deps={"frames": with_indexes(train_shards), **({"init": pretrain_init} if pretrain_init else {})},
        outs={"backbone": "models/backbone.safetensors", "loss": "metrics/pretrain_loss.csv"},
        params=["model", "pretrain", "runtime.threads"],
        plots={"metrics/pretrain_loss.csv": {"x": "epoch", "y": "loss", "title": "SimCLR pretraining loss"}},
        threads=threads,
        resources=training_resources(mem_mb=8000, runtime=240),
    ))
    if not images:
        result.extend(_selection_stages(params, root, shards, shard_files, indexes, threads))
    result.append(Stage(
        name="finetune",
        script="scripts/finetune.py",
        args=["--params", "params.yaml", "--backbone", "models/backbone.safetensors", "--frames", *shards,
              "--train", "data/labels/train.csv", "--test", "data/labels/test.csv",
              "--out", "models/classifier.safetensors", "--metrics", "metrics/finetune.json",
              "--predictions", "metrics/finetune_predictions.csv", "--confusion", "metrics/finetune_confusion.png",
              "--curve", "metrics/finetune_curve.csv"],
        deps={"backbone": "models/backbone.safetensors", "frames": shard_files,
              "train": "data/labels/train.csv", "test": "data/labels/test.csv"},
        outs={"classifier": "models/classifier.safetensors", "metrics": "metrics/finetune.json",
              "predictions": "metrics/finetune_predictions.csv", "confusion": "metrics/finetune_confusion.png",
              "curve": "metrics/finetune_curve.csv"},
        params=["model", "finetune", "runtime.threads"],
        metrics=["metrics/finetune.json"],
        plots={"metrics/finetune_curve.csv": {"x": "epoch", "y": ["loss", "accuracy"], "title": "fine-tuning"},
               "metrics/finetune_predictions.csv": {"template": "confusion", "x": "actual", "y": "predicted",
                                                    "title": "float model on the test sample"},
               "metrics/finetune_confusion.png": {}},
        threads=threads,
        resources=training_resources(mem_mb=4000, runtime=60),
    ))
    result.append(Stage(
        name="export",
        script="scripts/export_onnx.py",
        args=["--params", "params.yaml", "--classifier", "models/classifier.safetensors", "--frames", *shards,
              "--test", "data/labels/test.csv", "--out", "models/classifier.onnx", "--metrics", "metrics/export.json"],
        deps={"classifier": "models/classifier.safetensors", "frames": shard_files, "test": "data/labels/test.csv"},
        outs={"onnx": "models/classifier.onnx", "metrics": "metrics/export.json"},
        params=["model", "export", "runtime.threads"],
        metrics=["metrics/export.json"],
        threads=threads,
    ))
    result.append(Stage(
        name="quantize",
        script="scripts/quantize.py",
        args=["--params", "params.yaml", "--onnx", "models/classifier.onnx",
              "--classifier", "models/classifier.safetensors", "--frames", *shards,
              "--train", "data/labels/train.csv", "--test", "data/labels/test.csv",
              "--out", "models/classifier_int8.tflite", "--metrics", "metrics/quantize.json",
              "--predictions", "metrics/int8_predictions.csv", "--confusion", "metrics/int8_confusion.png"],
        deps={"onnx": "models/classifier.onnx", "classifier": "models/classifier.safetensors",
              "frames": shard_files, "train": "data/labels/train.csv", "test": "data/labels/test.csv"},
        outs={"tflite": "models/classifier_int8.tflite", "metrics": "metrics/quantize.json",
              "predictions": "metrics/int8_predictions.csv", "confusion": "metrics/int8_confusion.png"},
        params=["model", "quantize", "runtime.threads"],
        metrics=["metrics/quantize.json"],
        plots={"metrics/int8_predictions.csv": {"template": "confusion", "x": "actual", "y": "predicted",
                                                "title": "int8 model on the test sample"},
               "metrics/int8_confusion.png": {}},
        extra_code=["maskinspect/openmv_tflm_ops.txt"],
        threads=threads,
        resources={"mem_mb": 6000, "runtime": 30},
    ))
    result.append(Stage(
        name="tflm_check",
        script="scripts/tflm_check.py",
        args=["--params", "params.yaml", "--model", "models/classifier_int8.tflite", "--frames", *shards,
              "--test", "data/labels/test.csv", "--metrics", "metrics/tflm.json"],
        deps={"tflite": "models/classifier_int8.tflite", "frames": shard_files, "test": "data/labels/test.csv"},
        outs={"metrics": "metrics/tflm.json"},
        params=["model.input_size", "tflm"],
        metrics=["metrics/tflm.json"],
    ))
    result.append(Stage(
        name="bundle",
        script="scripts/bundle.py",
        args=["--params", "params.yaml", "--model", "models/classifier_int8.tflite", "--main", "openmv/main.py",
              "--quantize-metrics", "metrics/quantize.json", "--tflm-metrics", "metrics/tflm.json",
              "--out-dir", "dist/openmv", "--zip", "dist/openmv.zip"],
        deps={"tflite": "models/classifier_int8.tflite", "main": "openmv/main.py",
              "quantize_metrics": "metrics/quantize.json", "tflm_metrics": "metrics/tflm.json"},
        outs={"files": [f"dist/openmv/{n}" for n in ("model.tflite", "model.txt", "main.py", "manifest.json")],
              "zip": "dist/openmv.zip"},
        params=["bundle"],
        extra_code=["maskinspect/openmv_tflm_ops.txt"],
    ))
    if images:
        result.append(Stage(
            name="crossval",
            script="scripts/crossval.py",
            args=["--params", "params.yaml", "--backbone", "models/backbone.safetensors", "--frames", *train_shards,
                  "--train", "data/labels/train.csv", "--metrics", "metrics/crossval.json"],
            deps={"backbone": "models/backbone.safetensors", "frames": with_indexes(train_shards),
                  "train": "data/labels/train.csv"},
            outs={"metrics": "metrics/crossval.json"},
            params=["model", "finetune", "crossval", "runtime.threads"],
            metrics=["metrics/crossval.json"],
            threads=threads,
            resources=training_resources(mem_mb=4000, runtime=120),
        ))
        published = eff["compare"]["published_model"]
        if published:
            result.append(Stage(
                name="compare_published",
                script="scripts/compare_published.py",
                args=["--params", "params.yaml", "--test-dir", data["test_dir"], "--ours", "dist/openmv/model.tflite",
                      "--published", published, "--tflm-metrics", "metrics/tflm.json",
                      "--metrics", "metrics/published_comparison.json", "--table", "metrics/published_comparison.md"],
                deps={"test_dir": data["test_dir"], "ours": "dist/openmv/model.tflite", "published": published,
                      "tflm_metrics": "metrics/tflm.json"},
                outs={"metrics": "metrics/published_comparison.json", "table": "metrics/published_comparison.md"},
                params=["compare"],
                metrics=["metrics/published_comparison.json"],
            ))
    return result


def _selection_stages(params: dict, root: Path, shards: list[str], shard_files: list[str], indexes: list[str],
                      threads: int) -> list[Stage]:
    """Videos: embeddings, coreset selection, labelling hand-off."""
    data = params["data"]
    result: list[Stage] = []
    result.append(Stage(
        name="embed",
        script="scripts/embed.py",
        args=["--params", "params.yaml", "--frames", *shards, "--backbone", "models/backbone.safetensors",
              "--out", "data/embeddings/embeddings.npy", "--ids", "data/embeddings/ids.csv"],
        deps={"frames": shard_files, "backbone": "models/backbone.safetensors"},
        outs={"embeddings": "data/embeddings/embeddings.npy", "ids": "data/embeddings/ids.csv"},
        params=["model", "embed", "runtime.threads"],
        threads=threads,
    ))
    result.append(Stage(
        name="select",
        script="scripts/select_frames.py",
        args=["--params", "params.yaml", "--embeddings", "data/embeddings/embeddings.npy",
              "--ids", "data/embeddings/ids.csv", "--index", *indexes,
              "--selected", "data/selection/selected.csv", "--test", "data/selection/test.csv",
              "--map", "metrics/embedding_map.png"],
        deps={"embeddings": "data/embeddings/embeddings.npy", "ids": "data/embeddings/ids.csv", "index": indexes},
        outs={"selected": "data/selection/selected.csv", "test": "data/selection/test.csv",
              "map": "metrics/embedding_map.png"},
        params=["select"],
        plots={"metrics/embedding_map.png": {}},
    ))
    labels = "data/demo/truth.csv" if data["source"] == "demo" else data["labels"]
    # A labels file that does not exist yet is not a dependency: the stage then runs, exports
    # the frames to label and says what to do (a missing input would stop both front ends first).
    labels_dep = {"labels": labels} if data["source"] == "demo" or (root / labels).exists() else {}
    result.append(Stage(
        name="annotate",
        script="scripts/annotate.py",
        args=["--params", "params.yaml", "--selected", "data/selection/selected.csv",
              "--test", "data/selection/test.csv", "--frames", *shards, "--labels", labels,
              "--train-out", "data/labels/train.csv", "--test-out", "data/labels/test.csv"],
        deps={"selected": "data/selection/selected.csv", "test": "data/selection/test.csv",
              "frames": shard_files, **labels_dep},
        outs={"train": "data/labels/train.csv", "test": "data/labels/test.csv"},
        params=["data.source", "data.labels"],
    ))
    return result


def expand(stage: Stage, text: str, key: str) -> str:
    assert stage.foreach is not None
    return text.replace("{item.path}", stage.foreach[key]["path"]).replace("{item}", key)


def frame_shards(params: dict, root: Path = ROOT) -> list[str]:
    """The frame shards: one per video, or the training and test folders of labelled images."""
    if params["data"]["source"] == "images":
        return ["data/frames/images-train.npy", "data/frames/images-test.npy"]
    return [f"data/frames/{name}.npy" for name in video_items(params, root)]


def with_indexes(shards: list[str]) -> list[str]:
    """Shards followed by their index files (a shard is useless without its index)."""
    return shards + [s[: -len(".npy")] + ".csv" for s in shards]


def instances(all_stages: list[Stage]) -> list[tuple[str, Stage, str | None]]:
    """(DVC stage name, stage, foreach key) of every stage instance, in graph order."""
    out = []
    for st in all_stages:
        for key in (list(st.foreach) if st.foreach else [None]):
            out.append((f"{st.name}@{key}" if key else st.name, st, key))
    return out


def final_targets(params: dict, root: Path = ROOT) -> list[str]:
    """What `snakemake` builds by default: every output of every stage."""
    return [expand(st, out, key) if key else out
            for _name, st, key in instances(stages(params, root)) for out in st.out_paths()]


# ---------------------------------------------------------------------------
# dvc.yaml

DVC_HEADER = ("# GENERATED from maskinspect/pipeline.py by scripts/sync_dvc.py (the Snakefile\n"
              "# regenerates it when stale). Do not edit: change the pipeline definition.\n")


def _dvc_template(text: str) -> str:
    return text.replace("{item.path}", "${item.path}").replace("{item}", "${key}")


def dvc_document(params: dict, root: Path = ROOT) -> dict:
    doc_stages: dict[str, dict] = {}
    metrics: list[str] = []
    plots: list[dict] = []
    for st in stages(params, root):
        entry: dict = {"cmd": _dvc_template(st.cmd)}
        deps = st.code(root) + [_dvc_template(d) for d in st.dep_paths()]
        entry["deps"] = deps
        if st.params:
            entry["params"] = list(st.params)
        outs: list = []
        for out in st.out_paths():
            path = _dvc_template(out)
            # Everything under metrics/ is small and kept in git, so a diff shows what changed.
            outs.append({path: {"cache": False}} if out.startswith("metrics/") else path)
        entry["outs"] = outs
        metrics.extend(st.metrics)
        plots.extend({path: dict(spec)} if spec else path for path, spec in st.plots.items())
        if st.foreach:
            doc_stages[st.name] = {"foreach": {k: dict(v) for k, v in st.foreach.items()}, "do": entry}
        else:
            doc_stages[st.name] = entry
    doc: dict = {"stages": doc_stages}
    if metrics:
        doc["metrics"] = metrics
    if plots:
        doc["plots"] = plots
    return doc


def dvc_yaml_text(params: dict, root: Path = ROOT) -> str:
    body = yaml.safe_dump(dvc_document(params, root), sort_keys=False, default_flow_style=False, width=1000)
    return DVC_HEADER + body


def sync_dvc_yaml(root: Path = ROOT, params_path: str = "params.yaml") -> bool:
    """Rewrite dvc.yaml when it differs from the definition. Returns True when it changed."""
    from .atomic import write_text

    params = params_mod.load_raw(root / params_path)
    text = dvc_yaml_text(params, root)
    target = root / "dvc.yaml"
    if target.exists() and target.read_text() == text:
        return False
    write_text(target, text)
    return True


SETTINGS_DIR = ".snakemake/stage-settings"


def settings_file(name: str) -> str:
    """Per stage instance: the command and params values it runs with, as a file.

    Snakemake runs with `rerun-triggers: mtime` (profiles/default): a changed param or
    command rewrites this file, which makes exactly the stages that use it stale, by the
    same rule as any other input. Unlike Snakemake's internal records, it stays right when
    DVC builds a stage, so the two front ends never disagree about what is stale.
    """
    return f"{SETTINGS_DIR}/{name}.json"


def stage_settings(stage: Stage, params: dict, key: str | None) -> str:
    cmd = expand(stage, stage.cmd, key) if key else stage.cmd
    values = {k: params_mod.get(params, k) for k in stage.params}
    return json.dumps({"cmd": cmd, "params": values}, sort_keys=True, indent=1) + "\n"


def write_settings(root: Path, all_stages: list[Stage], params: dict) -> list[str]:
    """Write the settings files that changed (an unchanged file keeps its time); returns their names."""
    from .atomic import write_text

    changed = []
    for name, st, key in instances(all_stages):
        path = root / settings_file(name)
        text = stage_settings(st, params, key)
        if not path.exists() or path.read_text() != text:
            write_text(path, text)
            changed.append(name)
    return changed
