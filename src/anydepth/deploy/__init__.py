"""Deployment: static-shape exports (ONNX, OpenVINO, TorchScript, AWS Neuron) with manifests, and the runtimes
that run them behind the same pre- and post-processing as the PyTorch path."""
