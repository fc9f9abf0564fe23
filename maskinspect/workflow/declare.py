"""What a stage declaration is, and everything derived from it.

A stage names each of its files once, under a role: `inputs={"backbone": BACKBONE}`. From that
one entry come the command line (`--backbone models/backbone.safetensors`), the DVC dependency,
the Snakemake input and the script's `--backbone` argument. A role's value is one of:

    "models/backbone.safetensors"   one file; a foreach stage may write {item} and {item.path}
    From("test_dir")                a value of the data layout (layout.py): a path, or None to leave
                                    the argument out (optional=True), or a list (many=True)
    Shards("shards")                frame shards: each .npy on the command line; the .npy and its
                                    .csv index are both dependencies
    Folder("images_dir")            a folder: DVC hashes it whole; Snakemake gets the files inside,
                                    since a folder's own time does not change when a file in it does;
                                    or the pin of an outside input (pins/*.yaml, see pinned.py): the
                                    pin is then the dependency, in both front ends
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from maskinspect.workflow.pinned import is_pin_file

PARAMS_FILE = "params.yaml"


@dataclass(frozen=True)
class From:
    key: str
    many: bool = False
    optional: bool = False


@dataclass(frozen=True)
class Shards:
    key: str
    many: bool = True
    optional: bool = False


@dataclass(frozen=True)
class Folder:
    key: str
    many: bool = False
    optional: bool = False


Value = Union[str, From, Shards, Folder]


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline: a rule, a DVC stage and `scripts/<name>.py`, all of one name."""
    name: str
    inputs: dict[str, Value]
    outputs: dict[str, Value]
    params: tuple[str, ...]                          # params.yaml keys the stage reads (DVC tracks each)
    options: dict[str, str] = field(default_factory=dict)   # plain values on the command line
    flags: tuple[str, ...] = ()      # switches the script also takes (never on the table's command line)
    foreach: str | None = None       # layout key of {item: {"path": ...}}: one instance per item
    when: str = "always"             # layout flag: the stage exists only when it is true
    metrics: tuple[str, ...] = ()    # output roles that are DVC metrics
    plots: dict[str, dict] = field(default_factory=dict)   # output role -> DVC plot spec ({} for images)
    extra_code: tuple[str, ...] = () # non-Python files the stage reads (a code change reruns it)
    threads: bool = False            # uses runtime.threads cores
    later: bool = False              # runs when nothing on the way to the bundle is ready (Snakemake's priority)
    doc: str = ""

    @property
    def script(self) -> str:
        return f"scripts/{self.name}.py"

    def roles(self) -> list[tuple[str, str, Value]]:
        """(direction, role, value) in command-line order: inputs, then outputs."""
        return ([("in", r, v) for r, v in self.inputs.items()] +
                [("out", r, v) for r, v in self.outputs.items()])

    def log(self, item: str | None = None) -> str:
        return f"logs/{self.name}/{item or self.name}.log"

    def benchmark(self, item: str | None = None) -> str:
        return f"benchmarks/{self.name}/{item or self.name}.tsv"


def flag(role: str) -> str:
    return "--" + role.replace("_", "-")


def is_many(value: Value) -> bool:
    return not isinstance(value, str) and value.many


def is_optional(value: Value) -> bool:
    return not isinstance(value, str) and value.optional


class Resolved:
    """A stage's declaration with the layout's values filled in (foreach placeholders kept)."""

    def __init__(self, stage: Stage, layout):
        self.stage = stage
        self.layout = layout
        self.items: dict[str, dict] | None = getattr(layout, stage.foreach) if stage.foreach else None

    def values(self, value: Value) -> list[str]:
        """The paths of a role, as on the command line (empty: the argument is left out)."""
        if isinstance(value, str):
            return [value]
        got = getattr(self.layout, value.key)
        if got is None or got == []:
            if not value.optional:
                raise ValueError(f"stage {self.stage.name}: layout.{value.key} is empty")
            return []
        return list(got) if isinstance(got, (list, tuple)) else [got]

    def role_paths(self, value: Value) -> list[str]:
        """The files of a role as DVC sees them (a shard's index beside it)."""
        paths = self.values(value)
        if isinstance(value, Shards):
            return paths + [p[: -len(".npy")] + ".csv" for p in paths]
        return paths

    def snakemake_inputs(self, produced: set[str] = frozenset()) -> dict[str, list[str]]:
        """Input files by role as Snakemake sees them: a folder's files, not the folder."""
        kept = set(self.deps(produced))
        out = {}
        for role, value in self.stage.inputs.items():
            paths = [p for p in self.role_paths(value) if p in kept]
            if isinstance(value, Folder):
                paths = [f for folder in paths
                         for f in ([folder] if is_pin_file(folder) else folder_files(self.layout.root, folder))]
            out[role] = paths
        return out

    # -- the command -----------------------------------------------------------------------
    def command(self) -> str:
        """The command both front ends run; a foreach stage's keeps {item} and {item.path}."""
        st = self.stage
        words = ["python", st.script, "--params", PARAMS_FILE]
        for _direction, role, value in st.roles():
            vals = self.values(value)
            if vals:
                words += [flag(role), *vals]
        for option, text in st.options.items():
            words += [flag(option), text]
        words += ["--log", st.log("{item}" if st.foreach else None)]
        return " ".join(w if "{item" in w else shlex.quote(w) for w in words)

    # -- files -----------------------------------------------------------------------------
    def deps(self, produced: set[str] = frozenset()) -> list[str]:
        """Input files; an optional one that does not exist and that no stage makes is left out
        (a labels file not written yet: the stage then says what to do)."""
        out = []
        for value in self.stage.inputs.values():
            for p in self.role_paths(value):
                if is_optional(value) and "{item" not in p and p not in produced and not (self.layout.root / p).exists():
                    continue
                out.append(p)
        return out

    def outs(self) -> list[str]:
        return [p for v in self.stage.outputs.values() for p in self.role_paths(v)]

    def output(self, role: str) -> str:
        (path,) = self.values(self.stage.outputs[role])
        return path

    def instances(self) -> list[str | None]:
        return list(self.items) if self.items is not None else [None]

    def expand(self, text: str, item: str | None) -> str:
        if item is None:
            return text
        return text.replace("{item.path}", self.items[item]["path"]).replace("{item}", item)

    def instance_name(self, item: str | None) -> str:
        return f"{self.stage.name}@{item}" if item is not None else self.stage.name


def folder_files(root: Path, folder: str) -> list[str]:
    """Every file in a folder (recursively, hidden ones left out), relative as the folder is given."""
    base = root / folder
    if not base.is_dir():
        return []
    out = []
    for path in sorted(base.rglob("*")):
        rel = path.relative_to(base)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            out.append((Path(folder) / rel).as_posix())
    return out


class Graph:
    """Every stage these params build, resolved, in the order the data flows."""

    def __init__(self, stages: list[Stage], layout):
        self.layout = layout
        self.stages = [Resolved(st, layout) for st in stages]
        self.produced = {r.expand(p, item) for r in self.stages for item in r.instances() for p in r.outs()}

    def code(self, r: Resolved) -> list[str]:
        """A stage's code: its script, the package modules it imports, and the files it reads."""
        from maskinspect.workflow.codedeps import code_deps

        return [*code_deps(r.stage.script, self.layout.root), *r.stage.extra_code]

    def instances(self) -> list[tuple[str, Resolved, str | None]]:
        """(DVC stage name, stage, foreach item) of every stage instance, in graph order."""
        return [(r.instance_name(item), r, item) for r in self.stages for item in r.instances()]

    def final_targets(self) -> list[str]:
        return [r.expand(p, item) for _name, r, item in self.instances() for p in r.outs()]
