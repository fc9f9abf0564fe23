"""params.yaml validation: every mistake fails with a message naming the key."""
import pytest
import yaml

from conftest import ROOT, repo_params, run_script, write_params
from maskinspect.workflow import params as params_mod
from maskinspect.errors import PipelineError


def error_of(params: dict) -> str:
    with pytest.raises(PipelineError) as exc:
        params_mod.validate(params)
    return str(exc.value)


def test_repository_params_are_valid():
    assert params_mod.load(ROOT / "params.yaml")["data"]["source"] in ("demo", "videos", "images")


def test_unknown_key_is_named_with_its_section():
    p = repo_params()
    p["demo"]["colour"] = "blue"
    msg = error_of(p)
    assert "demo.colour: unknown key" in msg and "seconds" in msg


def test_unknown_section_is_named():
    p = repo_params()
    p["pretrian"] = {}
    assert "pretrian: unknown key" in error_of(p)


def test_wrong_type_is_named():
    p = repo_params()
    p["pretrain"]["epochs"] = "ten"
    assert error_of(p) == "params.yaml: pretrain.epochs: 'ten' has the wrong type (expected integer)"


def test_out_of_range_is_named():
    p = repo_params()
    p["demo"]["videos"] = 0
    msg = error_of(p)
    assert msg.startswith("params.yaml: demo.videos:") and "minimum" in msg


def test_nested_key_and_enum():
    p = repo_params()
    p["finetune"]["augment"]["min_scale"] = 1.5
    assert error_of(p).startswith("params.yaml: finetune.augment.min_scale:")
    p = repo_params()
    p["finetune"]["mode"] = "partial"
    assert "finetune.mode: 'partial' is not one of frozen, full" in error_of(p)
    p = repo_params()
    p["finetune"]["bad_weight"] = 0
    assert error_of(p).startswith("params.yaml: finetune.bad_weight:")


def test_missing_key_is_named():
    p = repo_params()
    del p["frames"]["crop"]
    assert "frames.crop: missing" in error_of(p)


def test_rules_across_keys():
    p = repo_params()
    p["demo"]["mix"] = {"good": 0.5, "bad": 0.5, "no_mask": 0.5}
    assert "demo.mix: shares must add up to 1" in error_of(p)
    p = repo_params()
    p["data"]["source"] = "images"
    assert "data.images_dir: required when data.source is images" in error_of(p)


def test_duplicate_key_and_bad_yaml_are_errors(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("demo:\n  seed: 1\n  seed: 2\n")
    with pytest.raises(PipelineError, match="key 'seed' given twice"):
        params_mod.load(f)
    f.write_text("demo: [unclosed\n")
    with pytest.raises(PipelineError, match=r"not valid YAML \(line \d+\)"):
        params_mod.load(f)


def test_a_stage_rejects_bad_params_with_one_line_and_writes_nothing(tmp_path):
    p = repo_params()
    p["frames"]["size"] = 8
    write_params(tmp_path / "params.yaml", p)
    result = run_script("render_demo.py", "--videos", "v/a.mp4", "--truth", "t.csv", cwd=tmp_path, check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("render_demo: error: params.yaml: frames.size:")
    assert not (tmp_path / "v").exists() and not (tmp_path / "t.csv").exists()


def test_pattern_errors_explain_themselves():
    p = repo_params()
    p["firmware"]["claims"][0]["firmware"] = "3.6.4"
    assert error_of(p) == ("params.yaml: firmware.claims.0.firmware: '3.6.4' is not valid "
                           "(an OpenMV firmware version; main.py's ml module appeared in 4.5.6)")
