"""The documentation stays true: what is written from the code (the README's pipeline diagram,
docs/reference.md) matches the code, the README stays a ten-minute read, and the results page
names figures by command, not by commit."""
import re
import subprocess
import sys

from conftest import ROOT, venv_env
from maskinspect.workflow import docs
from maskinspect.workflow.stages import STAGES

HASH = re.compile(r"\b[0-9a-f]{7,40}\b")


def test_the_written_pages_match_the_stage_table_and_the_schema():
    result = subprocess.run([sys.executable, "-m", "maskinspect.workflow.docs", "--check"], cwd=ROOT,
                            capture_output=True, text=True, env=venv_env())
    assert result.returncode == 0, result.stderr


def test_the_diagram_draws_every_stage_and_its_outside_inputs():
    drawn = docs.diagram()
    for st in STAGES:
        assert f'  {st.name}["{st.name}' in drawn, st.name
    assert "render_demo --> extract_frames" in drawn and "quantize --> firmware_check" in drawn
    assert "bundle --> report" in drawn and "report --> extract_frames" not in drawn
    assert "your videos" in drawn and "pinned inputs" in drawn


def test_a_stale_page_is_caught(tmp_path, monkeypatch):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/reference.md").write_text("# an old reference\n")
    (tmp_path / "README.md").write_text(f"x\n{docs.BEGIN}\nold\n{docs.END}\ny\n")
    (tmp_path / "maskinspect/workflow").mkdir(parents=True)
    (tmp_path / "maskinspect/workflow/params.schema.yaml").write_text(
        (ROOT / "maskinspect/workflow/params.schema.yaml").read_text())
    monkeypatch.setattr(docs, "ROOT", tmp_path)
    assert docs.main(["--check"]) == 1
    assert docs.main([]) == 0 and docs.main(["--check"]) == 0
    assert docs.diagram() in (tmp_path / "README.md").read_text()


def test_the_readme_is_a_ten_minute_read():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    pinned = {f"{c}" for c in re.findall(r"at ([0-9a-f]{40})", readme)}  # where the outside inputs come from
    assert set(HASH.findall(readme)) <= pinned | {c[:7] for c in pinned}
    for page in ("results", "pipeline", "reference", "operations", "security", "experiments",
                 "label-efficiency", "scale", "ci"):
        assert f"docs/{page}.md" in readme and (ROOT / "docs" / f"{page}.md").is_file(), page


def test_the_results_page_names_commands_not_commits():
    """No revision of this project; the libraries OpenMV links are named by their own commits."""
    import yaml

    libraries = {c["libtflm"] for c in yaml.safe_load((ROOT / "params.yaml").read_text())["firmware"]["claims"]}
    results = (ROOT / "docs/results.md").read_text()
    assert set(HASH.findall(results)) <= libraries
    assert results.count("scripts/venv.sh") >= 5
