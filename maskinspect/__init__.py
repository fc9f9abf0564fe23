"""maskinspect: the code shared by the pipeline stages in scripts/.

Importing the package pins the numerical environment before torch or TensorFlow
are imported (they read these variables once, at import): a rebuild on the same
kind of machine must give the same bytes, whatever the caller's shell exported.
"""
import os

_DETERMINISTIC_ENV = {
    # One fixed vector ISA for PyTorch's own kernels and for oneDNN, so that an
    # AVX-512 machine and an AVX2-only machine compute the same floats.
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "COMPATIBLE",
    # numpy's own SIMD loops and OpenBLAS's kernels at the AVX2 level too: their AVX-512 code
    # sums in another order (reductions, the PCA of the embedding map), so an AVX-512 machine
    # would round differently from one without it. Read when numpy loads: every stage script
    # imports maskinspect before numpy (a test checks).
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "OPENBLAS_CORETYPE": "Haswell",
    # TensorFlow (used by onnx2tf): no oneDNN graph rewrites, deterministic ops, quiet logs.
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "TF_DETERMINISTIC_OPS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
}
for _key, _value in _DETERMINISTIC_ENV.items():
    os.environ.setdefault(_key, _value)

CLASSES = ("bad", "good", "no_mask")  # output order of every classifier this project builds

__all__ = ["CLASSES"]
