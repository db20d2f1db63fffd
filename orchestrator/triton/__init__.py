"""Triton Inference Server: the local launcher, its Python environment, and the async client."""
