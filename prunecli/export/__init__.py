"""Export a checkpoint's model out of prunecli (ONNX, torch.export `.pt2`) and check it numerically.

graph.py  : the one `torch.export.export` step both formats start from, and why a model cannot be exported
formats.py: writing and running each format (onnxruntime for ONNX, `torch.export.load` for pt2)
run.py    : `prunecli export`: export to a temporary file, run it, compare with PyTorch, rename or remove
ort.py    : an onnxruntime session as a module, so `profile --backend onnxruntime` times it like PyTorch

onnx / onnxruntime / onnxscript are the optional extra `export` and are imported only here.
"""
