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
