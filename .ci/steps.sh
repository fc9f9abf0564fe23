#!/usr/bin/env bash
# The steps of CI, one list for this project's own CI (.ci/run) and for the workflows users copy
# (.github/workflows/, .gitlab-ci.yml): every CI runs `.ci/steps.sh STEP`, so they cannot drift.
#
#   .ci/steps.sh system            the system packages of envs/system-packages.txt (apt-get; sudo if not root)
#   .ci/steps.sh test              the README's test command: scripts/venv.sh pytest
#   .ci/steps.sh repro             dvc repro, then every output compared with the committed dvc.lock
#   .ci/steps.sh slow              the slow tests: faults, container, fresh machine, AVX2 CPU, cluster
#   .ci/steps.sh push              dvc push to the remote the environment names (DVC_REMOTE_URL,
#                                  DVC_REMOTE_ENDPOINT; AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)
#   .ci/steps.sh report BASE       report.md: the headline figures against BASE (dvc metrics diff), the
#                                  confusion matrix through the camera path, where the build report is
set -euo pipefail
cd "$(dirname "$0")/.."

step_system() {
    local packages sudo=""
    packages="$(awk '!/^#/ && NF {print $1}' envs/system-packages.txt | tr '\n' ' ')"
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $packages >/dev/null
}

step_test() {
    scripts/venv.sh pytest --durations=15
}

step_repro() {
    local committed
    committed="$(mktemp)"
    cp dvc.lock "$committed"
    scripts/venv.sh dvc repro --no-run-cache
    scripts/venv.sh python scripts/check_lock.py "$committed" dvc.lock
}

step_slow() {   # every slow test; .ci/run passes "slow and not nightly" to stay inside its time
    scripts/venv.sh pytest -m "${1:-slow}" -rs --durations=15
}

step_push() {
    : "${DVC_REMOTE_ENDPOINT:?set DVC_REMOTE_ENDPOINT (a CI secret): the S3 endpoint of the team remote}"
    [ -n "${DVC_REMOTE_URL:-}" ] && scripts/venv.sh dvc remote modify --local storage url "$DVC_REMOTE_URL"
    scripts/venv.sh dvc remote modify --local storage endpointurl "$DVC_REMOTE_ENDPOINT"
    scripts/venv.sh maskinspect push
}

step_report() {
    local base="${1:?the base branch or commit to compare with}"
    {
        echo "## maskinspect: this change's build"
        echo
        echo "Headline figures against \`$base\` (\`dvc metrics diff\`):"
        echo
        scripts/venv.sh dvc metrics diff "$base" --md --precision 4 || echo "(no figures on $base to compare with)"
        echo
        scripts/venv.sh python scripts/ci_report.py
    } > report.md
    cat report.md
}

step="${1:?usage: .ci/steps.sh system|test|repro|slow|push|report BASE}"
shift
case "$step" in
    system|test|repro|slow|push|report) "step_$step" "$@" ;;
    *) echo ".ci/steps.sh: error: unknown step $step (system, test, repro, slow, push, report)" >&2; exit 2 ;;
esac
