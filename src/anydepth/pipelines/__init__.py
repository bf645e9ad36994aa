"""Inference pipelines: preprocessing, device and precision policy, batching, postprocessing."""
