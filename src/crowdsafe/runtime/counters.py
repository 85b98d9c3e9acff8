"""One counter per camera, following each camera's ``model`` setting, with engines shared.

A site mixes views: a street-level camera sees large people (the sparse model counts them
best), a wide overview of a packed square sees tiny ones (the dense model). Each camera's
``model`` (dense | sparse | auto) is resolved once, from its calibration where ``auto`` can
use it (``counting.choice`` rule 1); engines are built once per model and shared, so ten
sparse cameras cost one engine.

Both models ship an int8 calibration table of their own (calibrated on train images through
that model's graph), so a site asked for int8 runs every camera in int8, whichever model it
uses: the precision asked for is the precision run. A model without a table (a source checkout
that has not run ``crowdsafe models calibrate --model ...``) fails when its engine is built,
with the command to run, rather than quietly switching precision.

Each camera infers only the region its zones and lines read (``counting.region``), unless its
``full_frame`` says otherwise or the counters are built with ``regions=False`` (a whole-frame
evaluation); a scale-normalised camera infers the whole frame, since its bands are rows of it.

A camera with a tuning (``cameras[i].tuning``, from ``crowdsafe tune``) runs the model its
tuning chose, whatever its ``model`` setting says: the gain and interval were fitted to it. A
tuning with fine-tuned layers (``tune --finetune``) names its model by a key of its own
(``counting.finetuned``): that camera gets an engine with its layers, shared with no other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import numpy as np

from crowdsafe.counting import batch
from crowdsafe.counting.choice import AutoCounter
from crowdsafe.counting.counter import Counts, DensityResult
from crowdsafe.counting.engines import EngineSpec, spec_for
from crowdsafe.counting.finetuned import LayersRef
from crowdsafe.counting.region import Box, RegionCounter
from crowdsafe.counting.scale import ScaleNormalisedCounter, normalised_counter, person_px_per_row
from crowdsafe.counting.tuning import CameraTuning
from crowdsafe.geometry.ground_map import GroundMap
from crowdsafe.geometry.site import SiteGeometry
from crowdsafe.runtime.plan import SitePlan, as_plan

log = logging.getLogger(__name__)


def finetuned_layers(tunings: Mapping[str, CameraTuning]) -> tuple[LayersRef, ...]:
    """The fine-tuned layers the site's tunings name (what replicas must be able to load)."""
    return tuple(dict.fromkeys(t.layers for t in tunings.values() if t.layers is not None))


def precision_for(model: str, spec: EngineSpec, layers: tuple[LayersRef, ...] = ()) -> EngineSpec:
    """The spec one model runs with: the site's precision, since every model has an int8 table
    (a fine-tuned one: the shipped table, with its own layers' scales from the camera's frames).

    Kept as the one place that maps (model, site spec) to an engine spec, so that a precision a
    future model lacks is decided here for the local runner and the Ray replicas alike.
    """
    return spec_for(model, spec, layers)


class CameraCounters:
    """The counter of each camera of a site; what :class:`FramePipeline` asks per frame.

    Models, tunings and regions come from the site's plan (``runtime.plan``); given only the
    geometry, the plan is compiled here (with ``tunings`` in place of the site's where given).
    """

    def __init__(self, plan: SitePlan | SiteGeometry, spec: EngineSpec,
                 factory: Callable[[EngineSpec], Counts] = batch.make_counter, *,
                 tunings: dict[str, CameraTuning] | None = None, regions: bool = True) -> None:
        self._spec = spec
        self._factory = factory
        self._by_model: dict[str, Counts] = {}
        self.plan = plan = as_plan(plan, tunings)
        geometry = plan.geometry
        self.models = dict(plan.models)
        self.tuned = {cid for cid in plan.tunings if cid in self.models}
        self._layers = finetuned_layers(plan.tunings)
        self.scaled: dict[str, bool] = {}
        grounds = {camera.id: geometry.cameras[camera.id].ground_map for camera in geometry.site.cameras}
        self._counters: dict[str, Counts] = {}
        #: Each camera's (core, crop) region; absent where the whole frame is inferred.
        self.regions: dict[str, tuple[Box, Box]] = {}
        self._frame_px = {cid: int(np.prod(cam.ground_map.image_size)) for cid, cam in
                          geometry.cameras.items()}
        for camera in geometry.site.cameras:
            model = self.models[camera.id]
            if model == "auto":
                counter: Counts = AutoCounter(lambda: self._engine("sparse"),  # type: ignore[arg-type]
                                              lambda: self._engine("dense"))  # type: ignore[arg-type]
            else:
                counter = self._engine(model)  # built now: errors before the run starts
            if camera.scale_normalise:
                counter = self._normalised(camera.id, model, counter, grounds[camera.id])
            self.scaled[camera.id] = isinstance(counter, ScaleNormalisedCounter)
            region = plan.regions.get(camera.id) if regions and not self.scaled[camera.id] else None
            if region is not None:
                self.regions[camera.id] = region
                counter = RegionCounter(counter, *region)
            self._counters[camera.id] = counter

    @staticmethod
    def _normalised(camera_id: str, model: str, counter: Counts, ground: GroundMap) -> Counts:
        """The camera's counter at the trained scale, or as it is (and why) where that cannot be."""
        if model != "sparse":
            log.warning("camera %s: scale_normalise applies to the sparse model only; this camera "
                        "runs %s at native scale", camera_id, model)
            return counter
        try:
            rows = person_px_per_row(ground.person_px, ground.image_size[1])
        except ValueError:
            log.warning("camera %s: scale_normalise needs person heights (a calibration with a "
                        "pose); counting at native scale", camera_id)
            return counter
        scaled = normalised_counter(counter, model, rows)
        if isinstance(scaled, ScaleNormalisedCounter):
            log.info("camera %s: counting %d bands at scales %s", camera_id, len(scaled.bands),
                     ", ".join(f"{b.scale:.2f}" for b in scaled.bands))
        return scaled

    def _engine(self, model: str) -> Counts:
        if model not in self._by_model:
            spec = precision_for(model, self._spec, self._layers)
            if spec.precision != self._spec.precision:
                log.warning("the %s model has no %s calibration; its cameras run in %s", model,
                            self._spec.precision, spec.precision)
            self._by_model[model] = self._factory(spec)
        return self._by_model[model]

    def for_camera(self, camera_id: str) -> Counts:
        return self._counters[camera_id]

    def count_camera(self, camera_id: str, image_bgr: np.ndarray) -> DensityResult:
        return self._counters[camera_id].count(image_bgr)

    @property
    def engine(self) -> object | None:
        """The first engine built (for banners that name the engine)."""
        first = next(iter(self._by_model.values()), None)
        return getattr(first, "engine", None)

    def describe(self) -> str:
        """``view001 sparse (int8)``-style summary for the start banner."""
        parts = []
        for camera_id, model in self.models.items():
            precision = "per frame" if model == "auto" else \
                precision_for(model, self._spec, self._layers).precision
            tuned = ", tuned" if camera_id in self.tuned else ""
            region = self.regions.get(camera_id)
            share = "" if region is None else \
                f", region {100 * region[1].pixels / self._frame_px[camera_id]:.0f} %"
            parts.append(f"{camera_id} {model} ({precision}{tuned}{share})")
        return ", ".join(parts)


def engine_name(counters: CameraCounters) -> str:
    return str(getattr(counters.engine, "name", "engine"))
