"""NVIDIA H200 SXM profile measured on one GPU (see metadata.json)."""
