"""The Ray runner: the local runner's stages spread over a Ray cluster (``pip install 'crowdsafe[ray]'``).

Same stages, different placement (docs/architecture.md: scaling changes the runner, not the stages):

- ``reader``: one actor per camera decodes its feed where it runs (near the camera) and hands
  on only sampled frames, encoded for the wire (``wire``);
- ``replica``: model replicas, one engine each: per-core engines on CPU nodes, and on GPUs one
  replica per GPU that batches frames of many cameras into one inference (``batching``,
  ``gpu``);
- ``runner``: the driver schedules frames to replicas, runs the pixel-light measurement stages
  (``runtime.pipeline.FramePipeline``, unchanged) and writes readings and alerts through the
  local runner's ``StoreWriter`` / ``AlertSink``; it also restarts what died.

Ray is imported only by the modules that need it, so ``wire``, ``batching`` and ``gpu`` work
(and are tested) without it.
"""

from __future__ import annotations

import importlib.util

RAY_EXTRA_HINT = "Ray is not installed: pip install 'crowdsafe[ray]'"


def ray_available() -> bool:
    return importlib.util.find_spec("ray") is not None
