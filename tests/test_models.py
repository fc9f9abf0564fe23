"""The published network, its checkpoints, and safe loading."""
import io
import zipfile

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from conftest import MODEL_CFG, outside_input
from maskinspect.model import models
from maskinspect.errors import PipelineError

def test_published_architecture_size_and_work():
    model = models.build_classifier(MODEL_CFG).eval()
    assert sum(p.numel() for p in model.parameters()) == 78_449
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 64, 64))
    assert counter.get_total_flops() == 33_357_920  # the published "33.4 MOp"


def test_strided_stem_takes_twice_the_input_at_the_same_work():
    cfg = {**MODEL_CFG, "stem_stride": 2}
    model = models.build_classifier(cfg).eval()
    with FlopCounterMode(display=False) as counter:
        out = model(torch.zeros(1, 3, 128, 128))
    assert out.shape == (1, 3)
    assert abs(counter.get_total_flops() - 33_357_920) / 33_357_920 < 0.01


def test_block1_stride_moves_the_first_downsampling_into_block1_with_the_same_weights():
    """block1_stride 2: the same tensors (the published checkpoints load), block 1 at half
    resolution, blocks 2-4 at the resolutions they had; block 1's first conv is the stride-1
    conv's output at every other pixel (same padding), its shortcut a 2x2 average pool."""
    published, early = models.build_backbone(MODEL_CFG).eval(), models.build_backbone({**MODEL_CFG, "block1_stride": 2})
    assert {k: v.shape for k, v in early.state_dict().items()} == {k: v.shape for k, v in published.state_dict().items()}
    early.load_state_dict(published.state_dict())
    early.eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    sizes = {}
    with torch.no_grad():
        h = early[:3](x)
        block1 = early[3][0]
        assert torch.allclose(block1.conv1(h), published[3][0].conv1(h)[:, :, ::2, ::2])
        assert torch.allclose(block1.shortcut(h), torch.nn.functional.avg_pool2d(h, 2))
        for i in (3, 4, 5, 6):
            h = early[i](h)
            sizes[i] = tuple(h.shape[1:])
        assert early(x).shape == (2, 16)
    assert sizes == {3: (8, 32, 32), 4: (16, 32, 32), 5: (32, 16, 16), 6: (64, 8, 8)}
    with FlopCounterMode(display=False) as counter:
        models.build_classifier({**MODEL_CFG, "block1_stride": 2}).eval()(torch.zeros(1, 3, 64, 64))
    assert counter.get_total_flops() < 0.8 * 33_357_920  # block 1's two convs at a quarter of their work


def test_published_lightly_checkpoint_fills_every_backbone_tensor():
    state = models.read_lightly_checkpoint(outside_input("published-checkpoint"))
    backbone = models.build_backbone(MODEL_CFG)
    assert set(state) == set(backbone.state_dict())
    models.load_into(backbone, state, "pretrained.ckpt")
    for key, tensor in backbone.state_dict().items():
        assert torch.equal(tensor, state[key]), key


def test_published_finetuned_state_dict_loads_into_the_classifier():
    state = torch.load(outside_input("published-classifier"), map_location="cpu", weights_only=True)
    model = models.build_classifier(MODEL_CFG)
    models.load_into(model, state, "finetuned.pt")
    assert torch.equal(model.classifier[0].weight, state["classifier.0.weight"])


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("touch /tmp/maskinspect-pwned",))


def test_checkpoint_loading_never_runs_code_from_the_file(tmp_path):
    import os

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"model.backbone.0.weight": torch.ones(3)}, "callback": _Evil()}, path)
    if os.path.exists("/tmp/maskinspect-pwned"):
        os.remove("/tmp/maskinspect-pwned")
    with pytest.raises(PipelineError, match=r"evil.ckpt: its pickle calls posix.system, .* refused"):
        models.read_lightly_checkpoint(path)
    assert not os.path.exists("/tmp/maskinspect-pwned")


def test_a_training_frameworks_own_objects_load_as_inert_stubs(tmp_path, monkeypatch):
    """A Lightning callback of a class Lightly no longer has (as in the published checkpoint)."""
    import sys
    import types

    module = types.ModuleType("lightly.embedding._callback")

    class CustomModelCheckpoint:
        pass

    CustomModelCheckpoint.__module__, CustomModelCheckpoint.__qualname__ = module.__name__, "CustomModelCheckpoint"
    module.CustomModelCheckpoint = CustomModelCheckpoint
    monkeypatch.setitem(sys.modules, module.__name__, module)  # only while saving: gone when loading
    path = tmp_path / "lightly.ckpt"
    torch.save({"state_dict": {"model.backbone.0.weight": torch.ones(3)}, "callbacks": [CustomModelCheckpoint()]},
               path)
    monkeypatch.delitem(sys.modules, module.__name__)
    assert list(models.read_lightly_checkpoint(path)) == ["0.weight"]


def test_mismatched_weights_name_the_tensor(tmp_path):
    backbone = models.build_backbone(MODEL_CFG)
    state = backbone.state_dict()
    state["1.weight"] = torch.zeros(4, 3, 3, 3)
    with pytest.raises(PipelineError, match=r"tensor 1.weight has shape \(4, 3, 3, 3\)"):
        models.load_into(models.build_backbone(MODEL_CFG), state, "x")
    del state["1.weight"]
    with pytest.raises(PipelineError, match="1 missing"):
        models.load_into(models.build_backbone(MODEL_CFG), state, "x")


def test_weights_files_are_byte_stable_and_not_foreign(tmp_path):
    torch.manual_seed(0)
    backbone = models.build_backbone(MODEL_CFG)
    models.save_weights(tmp_path / "a.safetensors", backbone, {"b": 1, "a": 2})
    models.save_weights(tmp_path / "b.safetensors", backbone, {"a": 2, "b": 1})
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    (tmp_path / "bad.safetensors").write_bytes(b"not weights")
    with pytest.raises(PipelineError, match="bad.safetensors: not a weights file"):
        models.load_weights(tmp_path / "bad.safetensors")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", b"garbage")
    (tmp_path / "broken.ckpt").write_bytes(buf.getvalue())
    with pytest.raises(PipelineError, match="broken.ckpt: not a readable PyTorch checkpoint"):
        models.read_lightly_checkpoint(tmp_path / "broken.ckpt")
