"""The site compiled once: one immutable ``SitePlan`` every stage of a run reads.

A site file says what is where; running it needs what follows from that: each camera's ground
geometry, where each line is measured, the part of each frame worth inferring, each camera's
model and tuning, the LoS/risk profiles, the alert rules and their messages. Each of these used
to be derived again by whichever stage needed it (the counters, the Ray strategy, the measuring
step, the evaluation), so a change to one derivation had to be made in every copy, and a reload
had to redo them all in step. Here they are derived once, by :func:`compile_plan`, and a reload
compiles a new plan and swaps it in one assignment.

Compiling is pure: the tuning files (and the background densities they carry) are read before,
by :func:`read_tunings`, the one place that reads them; frame sizes are probed before, when the
geometry is built (``runtime.core.prepare_site``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from crowdsafe.config.site import Site
from crowdsafe.counting.choice import choose_from_person_px
from crowdsafe.counting.region import Box, plan_region
from crowdsafe.counting.tuning import CameraTuning, site_tunings
from crowdsafe.counting.variants import ModelChoice
from crowdsafe.geometry.lines import LinePlan, plan_lines
from crowdsafe.geometry.region import needed_cells
from crowdsafe.geometry.site import SiteGeometry
from crowdsafe.runtime.alerting import site_messages
from crowdsafe.safety.alerts import AlertRule
from crowdsafe.safety.messages import MessageBook
from crowdsafe.safety.profiles import ProfileBook
from crowdsafe.safety.rules import default_rules


@dataclass(frozen=True)
class SitePlan:
    """What a validated site compiles to; read-only (mappings are proxies), shared by every stage."""

    geometry: SiteGeometry
    #: Line id -> where it is measured (lines no camera sees are absent).
    lines: Mapping[str, LinePlan]
    #: Camera id -> (core, crop) it infers; absent where the whole frame is inferred.
    regions: Mapping[str, tuple[Box, Box]]
    #: Camera id -> its tuning (``cameras[i].tuning``), as read before compiling.
    tunings: Mapping[str, CameraTuning]
    #: Camera id -> the model it runs: its tuning's, else its setting with ``auto`` resolved where possible.
    models: Mapping[str, ModelChoice]
    profiles: ProfileBook
    rules: tuple[AlertRule, ...]
    messages: MessageBook

    @property
    def site(self) -> Site:
        return self.geometry.site

    @property
    def line_cameras(self) -> frozenset[str]:
        """Cameras that measure a line (they need a flow pair per sample)."""
        return frozenset(plan.camera_id for plan in self.lines.values())

    def lines_of(self, camera_id: str) -> list[LinePlan]:
        return [plan for plan in self.lines.values() if plan.camera_id == camera_id]


def resolve_model(choice: ModelChoice, person_px: np.ndarray | None) -> ModelChoice:
    """``auto`` becomes dense or sparse when the calibration gives person heights; else stays auto."""
    if choice != "auto" or person_px is None:
        return choice
    try:
        return choose_from_person_px(person_px)
    except ValueError:  # no person height inside the image: decide per frame
        return "auto"


def camera_models(geometry: SiteGeometry, tunings: Mapping[str, CameraTuning]) -> dict[str, ModelChoice]:
    """Each camera's model: its tuning's (a fine-tuned model's key where it has its own layers), else
    its ``model`` setting with ``auto`` resolved where possible."""
    models: dict[str, ModelChoice] = {}
    for camera in geometry.site.cameras:
        if camera.id in tunings:
            models[camera.id] = tunings[camera.id].model_key  # type: ignore[assignment]  # own layers: their key
            continue
        ground = geometry.cameras[camera.id].ground_map
        person_px = ground.person_px[ground.valid] if ground.valid.any() else None
        models[camera.id] = resolve_model(camera.model, person_px)
    return models


def camera_region(geometry: SiteGeometry, camera_id: str, plans: list[LinePlan]) -> tuple[Box, Box] | None:
    """(core, crop) the camera infers, or None for the whole frame (``full_frame``, or no saving);
    the same for in-process and Ray counting."""
    if geometry.site.camera(camera_id).full_frame:
        return None
    cam = geometry.cameras[camera_id]
    return plan_region(needed_cells(cam, plans), cam.ground_map.image_size)


def read_tunings(site: Site) -> dict[str, CameraTuning]:
    """The tuning files the site names (``cameras[i].tuning``): the I/O done before compiling."""
    return site_tunings(site)


def compile_plan(geometry: SiteGeometry, tunings: Mapping[str, CameraTuning]) -> SitePlan:
    """The plan of a site whose geometry is built and whose tunings are read; no I/O."""
    site = geometry.site
    lines = plan_lines(geometry)
    plans = list(lines.values())
    regions = {cam.id: region for cam in site.cameras
               if (region := camera_region(geometry, cam.id, plans)) is not None}
    tunings = {cid: tuning for cid, tuning in tunings.items() if cid in geometry.cameras}
    return SitePlan(geometry=geometry, lines=MappingProxyType(lines), regions=MappingProxyType(regions),
                    tunings=MappingProxyType(tunings),
                    models=MappingProxyType(camera_models(geometry, tunings)),
                    profiles=site.safety.profile_book(),
                    rules=tuple(default_rules(site.safety.egress_limit_s)),
                    messages=site_messages(site))


def load_plan(geometry: SiteGeometry, tunings: Mapping[str, CameraTuning] | None = None) -> SitePlan:
    """Read what the site names (unless ``tunings`` is given), then compile."""
    return compile_plan(geometry, read_tunings(geometry.site) if tunings is None else tunings)


def as_plan(source: SitePlan | SiteGeometry, tunings: Mapping[str, CameraTuning] | None = None) -> SitePlan:
    """A stage's plan: the one it was given, or (for a caller holding only geometry, as tests and
    one-camera tools do) one compiled here; ``tunings`` replace the plan's own where given."""
    if isinstance(source, SitePlan):
        return source if tunings is None else compile_plan(source.geometry, tunings)
    return load_plan(source, tunings)
