"""params.yaml: loading and validation against the one schema (params.schema.yaml).

Every stage calls `load()` first; the Snakefile validates with the same function, so a
bad key fails before anything runs, with a message naming the key.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from maskinspect.errors import PipelineError

SCHEMA_PATH = Path(__file__).with_name("params.schema.yaml")
DEFAULT_PARAMS = "params.yaml"


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


RECIPE = "demo_recipe"  # the demo's settings, applied over the sections when data.source is demo


def _relaxed(node):
    """A section's schema with nothing required: a recipe sets only what differs."""
    if isinstance(node, dict):
        return {k: _relaxed(v) for k, v in node.items() if k != "required"}
    if isinstance(node, list):
        return [_relaxed(v) for v in node]
    return node


@functools.lru_cache(maxsize=1)
def schema() -> dict:
    full = yaml.safe_load(SCHEMA_PATH.read_text())
    sections = {k: _relaxed(v) for k, v in full["properties"].items() if k != "data"}
    full["properties"][RECIPE] = {
        "type": "object", "additionalProperties": False, "properties": sections,
        "description": "sections (or parts of them) that replace the real-data recipe when data.source is demo",
    }
    return full


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def recipe_for(raw: dict) -> str | None:
    """The section of settings that applies over the others for this data, if any."""
    return RECIPE if raw["data"]["source"] == "demo" and raw.get(RECIPE) else None


def effective(raw: dict) -> dict:
    """What the stages run with: the sections, with the recipe that applies over them."""
    recipe = recipe_for(raw)
    return merge(raw, raw[recipe]) if recipe else raw


def _key_of(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    key = _key_of(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        prefix = f"{key}." if error.absolute_path else ""
        return f"{prefix}{unknown[0]}: unknown key (allowed here: {', '.join(allowed)})"
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        prefix = f"{key}." if error.absolute_path else ""
        return f"{prefix}{missing[0]}: missing"
    if error.validator == "enum":
        return f"{key}: {error.instance!r} is not one of {', '.join(map(str, error.validator_value))}"
    if error.validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return f"{key}: {error.instance!r} has the wrong type (expected {expected})"
    if error.validator == "pattern" and "description" in error.schema:
        return f"{key}: {error.instance!r} is not valid ({error.schema['description']})"
    return f"{key}: {error.message}"


def _first_error(params: Any) -> jsonschema.ValidationError | None:
    validator = jsonschema.Draft7Validator(schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    return errors[0] if errors else None


def validate(params: Any, source: str = DEFAULT_PARAMS) -> dict:
    """Return `params` unchanged when valid; raise PipelineError naming the first bad key."""
    error = _first_error(params)
    if error is not None:
        raise PipelineError(f"{source}: {_describe(error)}")
    merged = effective(params)
    if merged is not params:
        error = _first_error(merged)
        if error is not None:
            raise PipelineError(f"{source}: {_describe(error)} (with {RECIPE} applied)")
    _check_consistency(merged, source)
    return params


def _check_consistency(params: dict, source: str) -> None:
    """Rules that span keys, which JSON schema cannot say."""
    mix = params["demo"]["mix"]
    total = sum(mix.values())
    if abs(total - 1.0) > 1e-6:
        raise PipelineError(f"{source}: demo.mix: shares must add up to 1 (they add up to {total:g})")
    data = params["data"]
    if "images" in data["source"]:
        for key in ("images_dir", "test_dir"):
            if not data.get(key):
                raise PipelineError(f"{source}: data.{key}: required when data.source is {data['source']}")


def parse(text: str, source: str = DEFAULT_PARAMS) -> dict:
    try:
        params = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PipelineError(f"{source}: not valid YAML{where}: {problem}") from None
    if not isinstance(params, dict):
        raise PipelineError(f"{source}: expected a mapping of sections at the top level")
    return validate(params, source)


def load(path: str | Path = DEFAULT_PARAMS) -> dict:
    """The validated params a stage runs with (with the demo, demo_recipe applied)."""
    return effective(load_raw(path))


def load_raw(path: str | Path = DEFAULT_PARAMS, shown: str | None = None) -> dict:
    """The validated params as written (what DVC tracks key by key); errors name the file as
    `shown` (default: the path given)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise PipelineError(f"{shown or path}: cannot read params ({exc.strerror})") from None
    return parse(text, shown or str(path))


def get(params: dict, dotted: str):
    """params['a']['b'] for 'a.b' (the form DVC and the stage definitions use)."""
    value = params
    for part in dotted.split("."):
        value = value[part]
    return value
