"""Fine-tuning the sparse-scene model (``crowdsafe train``).

The only part of crowdsafe that imports torch, and only when ``crowdsafe train`` runs: the
run-time package counts with ONNX graphs built from NumPy weights and never needs it.
"""
