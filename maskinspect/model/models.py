"""The published network: a ResNet-9 (width 0.125) backbone and a linear head.

    features:   BatchNorm2d(3)        # normalisation of raw [0,1] RGB, folded into the model
                conv1 3x3 (stride 1, or 2 for a larger input at equal MOps), bn1
                layer1..layer4        # Lightly's BasicBlocks, 8/16/32/64 channels; the first
                                      # downsampling in layer2 (or layer1: block1_stride 2)
                Conv2d(64, 16, 1)     # 16 features
                AdaptiveAvgPool2d(1), Flatten
    classifier: Linear(16, 3)         # bad, good, no_mask

Module names and order are those of the published `finetuned.pt` (`features.*`,
`classifier.0.*`), so the published weights load as they are. Lightly's ResNet.forward
hard-codes a 4x4 pool for 32 px inputs, so the backbone is rebuilt from its children.
Weights are stored as safetensors: tensors only, byte-stable, safe to load.
"""
from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import torch
from torch import nn

from maskinspect import CLASSES
from maskinspect.errors import PipelineError


def backbone(width: float = 0.125, features: int = 16, stem_stride: int = 1, block1_stride: int = 1) -> nn.Sequential:
    from lightly.models import ResNetGenerator

    resnet = ResNetGenerator("resnet-9", width=width)
    conv1, bn1, *layers, linear = list(resnet.children())
    if stem_stride != 1:
        conv1.stride = (stem_stride, stem_stride)
    if block1_stride == 2:
        # The first downsampling moved from block 2 into block 1: block 1's convolutions run at half
        # the resolution (half the network's instructions were spent there at full resolution),
        # while the stem and blocks 2-4 see the scales they were pretrained at. Block 1's identity
        # shortcut becomes a 2x2 average pool: no new weights, so the published checkpoints load.
        block1, block2 = layers[0][0], layers[1][0]
        block1.conv1.stride = (2, 2)
        block1.shortcut = nn.Sequential(nn.AvgPool2d(2))
        block2.conv1.stride = (1, 1)
        block2.shortcut[0].stride = (1, 1)
    return nn.Sequential(
        nn.BatchNorm2d(3), conv1, bn1, *layers,
        nn.Conv2d(linear.in_features, features, kernel_size=1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )


class Classifier(nn.Module):
    def __init__(self, features: nn.Sequential, num_features: int = 16, num_classes: int = len(CLASSES)):
        super().__init__()
        self.features = features
        self.classifier = nn.Sequential(nn.Linear(num_features, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build_backbone(model_cfg: dict) -> nn.Sequential:
    return backbone(model_cfg["width"], model_cfg["features"], model_cfg["stem_stride"], model_cfg["block1_stride"])


def build_classifier(model_cfg: dict) -> Classifier:
    return Classifier(build_backbone(model_cfg), model_cfg["features"])


# ---------------------------------------------------------------------------
# Weights files

def save_weights(path: str | Path, module_or_state, metadata: dict | None = None) -> None:
    """Atomic safetensors file of a state dict (buffers included, sorted keys)."""
    from safetensors.torch import save_file

    from maskinspect.atomic import atomic_path

    state = module_or_state.state_dict() if isinstance(module_or_state, nn.Module) else module_or_state
    tensors = {k: v.detach().cpu().contiguous() for k, v in sorted(state.items())}
    # One metadata key only: safetensors writes a map's keys in hash order (bytes would vary).
    meta = {"maskinspect": json.dumps(metadata or {}, sort_keys=True)}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise PipelineError(f"{path}: not a weights file ({exc})") from None


def load_into(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load every tensor of `module` from `state`; any missing, extra or misshapen tensor is an error."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise PipelineError(f"{source}: does not fit this backbone ({len(missing)} missing, "
                            f"{len(extra)} unexpected tensors; {detail})")
    for key, tensor in own.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise PipelineError(f"{source}: tensor {key} has shape {tuple(state[key].shape)}, "
                                f"this backbone needs {tuple(tensor.shape)} (check model.width/features)")
    module.load_state_dict(state, strict=True)


# ---------------------------------------------------------------------------
# The published checkpoints

class _Stub:
    """Stands in for any class the checkpoint names that we do not trust or no longer have."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch", "Size"),
}


# Training frameworks whose checkpoints carry their own objects (callbacks, hyperparameters): those
# become inert stubs. Anything else a pickle names (os.system, builtins.eval, subprocess.Popen...)
# is refused before it can be called.
_STUBBED_PACKAGES = ("lightly", "pytorch_lightning", "lightning")


class _Refused(Exception):
    pass


class _TensorsOnlyUnpickler(pickle.Unpickler):
    """Rebuilds tensors and plain containers; a training framework's own classes become inert
    stubs; any other global refuses the file, so loading cannot run code from it (pickle's
    `find_class` is the only way in)."""

    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return getattr(__import__(module, fromlist=[name]), name)
        if module == "torch" and name.endswith("Storage"):
            return getattr(torch, name)
        if module.split(".")[0] in _STUBBED_PACKAGES:
            return _Stub
        raise _Refused(f"{module}.{name}")


class _TensorsOnlyPickle:
    """A `pickle_module` for torch.load."""
    Unpickler = _TensorsOnlyUnpickler
    load = staticmethod(lambda f, **kw: _TensorsOnlyUnpickler(f, **kw).load())
    __name__ = "maskinspect.model.models._TensorsOnlyPickle"


def read_lightly_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Backbone tensors of a Lightly (PyTorch Lightning) checkpoint, keys `model.backbone.*`
    renamed to this project's `0..N` Sequential indices."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_TensorsOnlyPickle)
    except _Refused as exc:
        raise PipelineError(f"{path}: its pickle calls {exc}, which is neither a tensor nor a container: "
                            f"refused (nothing in it was run)") from None
    except Exception as exc:  # noqa: BLE001 - a foreign file can fail in many ways; say which file
        raise PipelineError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise PipelineError(f"{path}: no state_dict in this checkpoint")
    prefix = "model.backbone."
    out = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and isinstance(v, torch.Tensor)}
    if not out:
        raise PipelineError(f"{path}: no {prefix}* tensors in its state_dict")
    return out


def read_any_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Backbone weights from a safetensors file of ours, a Lightly checkpoint, or a plain
    state_dict (e.g. the published finetuned.pt, `features.*` keys), loaded safely."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        state = load_weights(path)
    elif path.suffix == ".ckpt":
        return read_lightly_checkpoint(path)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            named = re.search(r"(?:[Uu]nsupported global:? GLOBAL|unsupported GLOBAL) ([\w.]+)", str(exc))
            if named:
                raise PipelineError(f"{path}: its pickle calls {named.group(1)}, which is neither a tensor nor a "
                                    f"container: refused (nothing in it was run)") from None
            raise PipelineError(f"{path}: not a plain state_dict ({type(exc).__name__})") from None
    if any(k.startswith("features.") for k in state):
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    return state
