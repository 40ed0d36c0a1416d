"""The integer-exact byte Transformer: its specification, integer weights, reference forward,
quantization-aware training (PyTorch, optional) and ONNX export.

Only :mod:`spec`, :mod:`weights` and :mod:`reference` are imported without optional dependencies;
:mod:`qat` needs ``torch`` and :mod:`export` needs ``onnx``.
"""
