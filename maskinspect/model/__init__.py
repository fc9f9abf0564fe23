"""The model: the ResNet-9 and its weights, SimCLR pretraining, fine-tuning, evaluation, the ONNX export
and the int8 conversion."""
