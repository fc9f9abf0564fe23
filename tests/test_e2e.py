"""The whole tiny pipeline through Snakemake, from rendered videos to the OpenMV bundle."""
import json
import zipfile

from maskinspect import CLASSES


def test_tiny_pipeline_builds_every_artifact(tiny_build):
    expected = ["data/demo/truth.csv", "data/frames/demo-00.npy", "data/frames/demo-01.csv",
                "models/backbone.safetensors", "data/embeddings/embeddings.npy", "data/selection/selected.csv",
                "data/labels/videos-train.csv", "models/classifier.safetensors", "models/classifier.onnx",
                "models/classifier_int8.tflite", "metrics/finetune.json", "metrics/quantize.json",
                "metrics/tflm.json", "dist/openmv/model.tflite", "dist/openmv/model.txt", "dist/openmv/main.py",
                "dist/openmv/manifest.json", "dist/openmv.zip"]
    missing = [p for p in expected if not (tiny_build / p).is_file()]
    assert missing == []
    manifest = json.loads((tiny_build / "dist/openmv/manifest.json").read_text())
    assert manifest["labels"] == list(CLASSES)
    inp = manifest["input"]
    assert (inp["dtype"], inp["shape"], inp["zero_point"]) == ("int8", [1, 64, 64, 3], -128)
    assert abs(inp["scale"] - 1 / 255) < 1e-9
    assert manifest["firmware"]["minimum"] == "4.5.6"
    names = zipfile.ZipFile(tiny_build / "dist/openmv.zip").namelist()
    assert names == ["openmv/main.py", "openmv/manifest.json", "openmv/model.tflite", "openmv/model.txt"]
