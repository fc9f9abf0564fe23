# The pipeline's image: Debian bookworm, Debian's Python 3.11, the locked environment
# (hashes required), the Cortex-M7 cross compiler and QEMU that firmware_check runs the model
# with, a non-root user, the pinned-thread and seed environment of the build.
#
#   docker run --rm -v "$PWD:/project" maskinspect                 # snakemake --cores all
#   docker run --rm -v "$PWD:/project" maskinspect dvc repro
#
# Built and run on machines without a Docker engine by scripts/build_image.sh (buildah).

# The default base is pinned by digest. scripts/build_image.sh passes an equivalent base
# bootstrapped locally with debootstrap where no registry is reachable.
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim@sha256:4b50eb66f977b4062683ff434ef18ac191da862dbe966961bc11990cf5791a8d
FROM ${BASE_IMAGE}

# TORCH=locked (default): torch and torchvision exactly as envs/requirements.lock pins them
# (the CUDA build, which also runs on CPUs; about 9 GB). TORCH=cpu: the CPU-only build of
# the same versions from download.pytorch.org (about 3 GB; not hash-pinned, and its floats
# may differ from the locked build's in the last bits).
ARG TORCH=locked
ARG USER_ID=1000
# Where a proxy's certificate authority must be trusted while installing (scripts/build_image.sh
# passes the host's store, mounted read-only); empty: the image's own certificates.
ARG CERT_FILE=""

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3=3.11.2-1+b1 python3-venv=3.11.2-1+b1 \
      git=1:2.39.5-0+deb12u3 ca-certificates=20250419~deb12u2 util-linux=2.38.1-5+deb12u3 \
      gcc-arm-none-eabi=15:12.2.rel1-1 libnewlib-arm-none-eabi=3.3.0-1.3+deb12u1 \
      libstdc++-arm-none-eabi-newlib=15:12.2.rel1-1+23 qemu-system-arm=1:7.2+dfsg-7+deb12u18+b3 \
 && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONHASHSEED=0 \
    OMP_NUM_THREADS=2 \
    MKL_NUM_THREADS=2 \
    ATEN_CPU_CAPABILITY=avx2 \
    ONEDNN_MAX_CPU_ISA=AVX2 \
    MKL_CBWR=COMPATIBLE \
    NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR" \
    OPENBLAS_CORETYPE=Haswell \
    TF_ENABLE_ONEDNN_OPTS=0 \
    TF_DETERMINISTIC_OPS=1 \
    TF_CPP_MIN_LOG_LEVEL=2

# The same path as scripts/venv.sh: uv (pinned by hash in envs/bootstrap.txt) syncs the lock,
# hashes required; the CPU variant's torch comes from download.pytorch.org with pip.
COPY envs/requirements.lock envs/bootstrap.txt envs/lock_without_cuda.py /opt/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps --require-hashes --target /opt/uv -r /opt/bootstrap.txt \
 && if [ -n "$CERT_FILE" ]; then export SSL_CERT_FILE="$CERT_FILE"; fi \
 && if [ "$TORCH" = "cpu" ]; then \
      python3 /opt/lock_without_cuda.py /opt/requirements.lock > /opt/requirements.nocuda \
      && UV_NATIVE_TLS=1 /opt/uv/bin/uv pip sync --no-cache --python /opt/venv/bin/python --require-hashes \
           /opt/requirements.nocuda \
      && pip install --no-deps --index-url https://download.pytorch.org/whl/cpu \
           "torch==$(sed -n 's/^torch==\([^ ]*\).*/\1/p' /opt/requirements.lock)+cpu" \
           "torchvision==$(sed -n 's/^torchvision==\([^ ]*\).*/\1/p' /opt/requirements.lock)+cpu"; \
    else \
      UV_NATIVE_TLS=1 /opt/uv/bin/uv pip sync --no-cache --python /opt/venv/bin/python --require-hashes \
        /opt/requirements.lock; \
    fi \
 && rm -rf /opt/uv

# The project's package, linked to /project: the repository mounted there is what runs.
COPY pyproject.toml /project/pyproject.toml
COPY maskinspect /project/maskinspect
RUN pip install --no-deps --no-build-isolation -e /project \
 && useradd --create-home --uid "$USER_ID" maskinspect \
 && chown -R maskinspect /project \
 && git config --system --add safe.directory '*'

USER ${USER_ID}
WORKDIR /project
CMD ["snakemake", "--cores", "all"]
