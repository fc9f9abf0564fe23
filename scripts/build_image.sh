#!/usr/bin/env bash
# Build the pipeline's image from the Dockerfile with buildah (no Docker engine needed), then,
# inside the image: the environment tests and a build of a clean clone of a project (by default
# this repository: the full demo), whose every output is compared with the dvc.lock committed
# there (the host's build).
#
#   sudo scripts/build_image.sh                      # build, test, reproduce the demo
#   sudo scripts/build_image.sh --project DIR        # ... reproduce the build committed in DIR (a git repository)
#   sudo scripts/build_image.sh --build-only
#   sudo scripts/build_image.sh --base-only          # only the local Debian base (tests/test_fresh_machine.py)
#
# Where no image registry is reachable, the base (the Dockerfile pins debian:bookworm-slim by
# digest) is bootstrapped locally with debootstrap from Debian's package mirror. pip inside
# the build reaches the package registries through the host's CA certificates and pip
# configuration, mounted read-only; the large wheels (torch and its CUDA libraries) come
# from the local folders that configuration names, also mounted read-only:
#
#   PIP_LOCAL_DIRS   folders mounted read-only at the same path (default: /opt/wheels /opt/pypi /opt/pypi-more)
#   IMAGE            image name (default: localhost/maskinspect:latest)
#   BASE_IMAGE       base to build FROM (default: a local debootstrap of bookworm, made once)
#   TORCH            locked (default) or cpu: passed to the Dockerfile
#   MIRROR           Debian mirror for debootstrap (default: http://deb.debian.org/debian)
#   PYTEST_ARGS      what the in-image test run gets (default: the environment tests)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${IMAGE:-localhost/maskinspect:latest}"
LOCAL_BASE="localhost/maskinspect-base:bookworm"
BASE_IMAGE="${BASE_IMAGE:-$LOCAL_BASE}"
PIP_LOCAL_DIRS="${PIP_LOCAL_DIRS:-/opt/wheels /opt/pypi /opt/pypi-more}"
TORCH="${TORCH:-locked}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
PYTEST_ARGS="${PYTEST_ARGS:--q -rs tests/test_environment.py}"
build_only=0
base_only=0
project="$root"
while [ $# -gt 0 ]; do
    case "$1" in
        --build-only) build_only=1 ;;
        --base-only) base_only=1 ;;
        --project) project="$(cd "$2" && pwd)"; shift ;;
        *) echo "build_image: error: unknown argument $1 (--build-only, --base-only, --project DIR)" >&2; exit 2 ;;
    esac
    shift
done

say() { echo "build_image: $*" >&2; }
die() { echo "build_image: error: $*" >&2; exit 1; }

command -v buildah >/dev/null || die "buildah not found (Debian: apt-get install buildah)"
[ "$(id -u)" -eq 0 ] || die "run as root: buildah builds here with --isolation chroot as root"

# ---- base image -------------------------------------------------------------------------
if [ "$BASE_IMAGE" = "$LOCAL_BASE" ] && ! buildah inspect --type image "$LOCAL_BASE" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || die "debootstrap not found (Debian: apt-get install debootstrap)"
    say "bootstrapping $LOCAL_BASE with debootstrap (bookworm, minbase) from $MIRROR"
    rootfs="$(mktemp -d)"
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >/dev/null
    # As debian:bookworm-slim: the security and updates suites, no apt caches, no docs.
    cat > "$rootfs/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
    rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"* "$rootfs/usr/share/doc/"*
    ctr="$(buildah from scratch)"
    buildah add --quiet "$ctr" "$rootfs" / >/dev/null
    buildah config --cmd /bin/bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
    buildah commit --quiet --rm "$ctr" "$LOCAL_BASE" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
fi

[ "$base_only" -eq 1 ] && { echo "base: $LOCAL_BASE"; exit 0; }

# ---- the image --------------------------------------------------------------------------
# The host's CA certificates go in read-only beside the image's own /etc/ssl/certs (which the
# image's ca-certificates package must be free to write), and pip's configuration is the
# host's with its certificate path pointed there.
conf="$(mktemp -d)"
trap 'rm -rf "$conf"' EXIT
volumes=(-v /etc/ssl/certs:/run/host-certs:ro)
if [ -f /etc/pip.conf ]; then
    sed 's#/etc/ssl/certs/#/run/host-certs/#g' /etc/pip.conf > "$conf/pip.conf"
    volumes+=(-v "$conf/pip.conf:/etc/pip.conf:ro")
fi
[ -d /etc/xdg/pip ] && volumes+=(-v /etc/xdg/pip:/etc/xdg/pip:ro)
for dir in $PIP_LOCAL_DIRS; do
    [ -d "$dir" ] && volumes+=(-v "$dir:$dir:ro")
done
# The build holds the locked environment twice while it commits its layer (about 25 GB at the
# peak): refuse in one line rather than fill the disk half-way through.
storage="$(buildah info --format '{{.store.GraphRoot}}' 2>/dev/null || echo /var/lib/containers)"
[ -d "$storage" ] || storage=/var/lib
free_gb=$(( $(df --output=avail -k "$storage" | tail -n 1) / 1024 / 1024 ))
[ "$free_gb" -ge "${NEED_GB:-25}" ] || die "only ${free_gb} GB free under $storage; building the image needs about ${NEED_GB:-25} GB (buildah rmi --prune frees old images)"
previous="$(buildah images --noheading --format '{{.ID}}' "$IMAGE" 2>/dev/null | head -n 1 || true)"
say "building $IMAGE from $BASE_IMAGE (TORCH=$TORCH)"
start=$(date +%s)
buildah bud --isolation chroot --network host --layers --format docker "${volumes[@]}" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "TORCH=$TORCH" \
    --build-arg "CERT_FILE=/run/host-certs/ca-certificates.crt" \
    -f "$root/Dockerfile" -t "$IMAGE" "$root" >&2
built=$(( $(date +%s) - start ))
size="$(buildah images --format '{{.Size}}' "$IMAGE" | head -n 1)"
# A rebuild moves the name to a new image: the one it leaves behind (about 13 GB, nameless
# now) is removed, so repeated builds do not fill the disk.
current="$(buildah images --noheading --format '{{.ID}}' "$IMAGE" | head -n 1)"
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
    buildah rmi "$previous" >/dev/null 2>&1 && say "removed the previous $IMAGE ($previous)" || true
fi
echo "image: $IMAGE"
echo "image size: $size"
echo "build time: ${built} s"
[ "$build_only" -eq 1 ] && exit 0

# ---- inside the image: tests and a build of a clean clone of the project ----------------------
work="$(mktemp -d)"
ctr=""
cleanup() { [ -n "$ctr" ] && buildah rm "$ctr" >/dev/null 2>&1; rm -rf "$work" "$conf"; }
trap cleanup EXIT
git clone -q "$project" "$work/project"
# The host's build is the committed dvc.lock (read now: once the clone belongs to the image's
# user, the host's git refuses it as of dubious ownership).
cp "$work/project/dvc.lock" "$work/project/.committed.lock"
uid="$(buildah inspect --type image --format '{{.OCIv1.Config.User}}' "$IMAGE")"
chown -R "${uid:-1000}" "$work"
mounts=(-v "$work/project:/project")
if [ -d "$root/../shared" ]; then
    # beside /project as it is beside the repository, and at its own path for params that name it so
    shared="$(cd "$root/../shared" && pwd)"
    mounts+=(-v "$shared:/shared:ro" -v "$shared:$shared:ro")
fi
ctr="$(buildah from --quiet "$IMAGE")"
# The pinned outside inputs come from the mirror /shared where there is one (no GitHub here).
envs=()
[ -d "$root/../shared" ] && envs+=(--env MASKINSPECT_MIRROR=/shared)
in_image() { buildah run --isolation chroot --network host "${mounts[@]}" "${envs[@]}" "$ctr" -- "$@"; }

say "fast tests inside the image"
# The tests find ../shared beside the repository: /project and /shared are siblings.
in_image pytest $PYTEST_ARGS

say "build inside the image (snakemake --cores all) of $project"
start=$(date +%s)
in_image snakemake --cores all --quiet rules >&2
echo "build in the image: $(( $(date +%s) - start )) s"
# The image's build recorded its own dvc.lock (dvc commit); compare it with the host's.
in_image python scripts/check_lock.py /project/.committed.lock /project/dvc.lock
image_sha="$(sha256sum "$work/project/dist/openmv.zip" | cut -d' ' -f1)"
echo "bundle sha256, image build: $image_sha"
if [ -f "$project/dist/openmv.zip" ]; then
    host_sha="$(sha256sum "$project/dist/openmv.zip" | cut -d' ' -f1)"
    echo "bundle sha256, host build:  $host_sha ($([ "$host_sha" = "$image_sha" ] && echo identical || echo DIFFERENT))"
fi
