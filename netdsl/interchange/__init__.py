"""Exchange with other tools: ONNX export and the ONNX, Caffe and Darknet importers (to come).
Reads the front end, the IR and plain arrays (a state dict of numpy arrays), never the backend."""
