"""Exchange with other tools: ONNX export (onnx_export.py); the ONNX, Caffe and Darknet importers
come next. Reads the front end, the IR and plain arrays (a state dict of numpy arrays), never
the backend."""
