"""Shipped models (ONNX graphs and manifest.json), installed as the data package lmcodec.onnx_models."""
