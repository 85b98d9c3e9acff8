"""Fine-tuning the sparse-scene model (``crowdsafe train``), and a camera's own output layer
(``crowdsafe tune --finetune``, ``training.camera``: NumPy only).

The only part of crowdsafe that imports torch (``training.loop``), and only when ``crowdsafe
train`` runs: the run-time package counts with ONNX graphs built from NumPy weights and never
needs it, and commissioning a camera does not either.
"""
