"""The site file: cameras, their calibration, zones and lines in metres, safety profiles.

Why and how: docs/design-notes.md, ``crowdsafe.config.site``."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import shapely
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from shapely.validation import explain_validity

from crowdsafe.safety.guidance import EGRESS_TARGET_S, GREEN_GUIDE_PMM
from crowdsafe.safety.profiles import (
    BUILTIN_PROFILES,
    DEFAULT_LOS_BY_ZONE_TYPE,
    DEFAULT_RISK_PROFILE,
    Profile,
    ProfileBook,
    ZoneType,
)

Point2 = tuple[float, float]
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", max_length=128)]

#: Largest frame side accepted (16K video is 15360 px): a larger ``image_size`` is a typo, and the
#: ground map would allocate gigabytes for it.
MAX_IMAGE_SIDE = 16_384

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h)\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


class SiteError(ValueError):
    """The site file is unusable; ``problems`` are 'field.path: reason' lines, all of them."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(prefix + p for p in problems))


class _Strict(BaseModel):
    """Unknown keys are errors: a typo ('capacitiy') must not silently drop a setting."""

    # NaN and infinity are refused everywhere: a NaN corner passes every comparison unnoticed.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Sampling(_Strict):
    """How often a camera is counted; counting every frame wastes CPU on near-identical images."""

    every: str = Field("1s", description="interval between counted frames, e.g. '500ms', '5s', '1min'")

    @field_validator("every")
    @classmethod
    def _duration(cls, value: str) -> str:
        if parse_duration(value) <= 0:
            raise ValueError("must be a positive duration")
        return value

    @property
    def seconds(self) -> float:
        return parse_duration(self.every)


class Calibration(_Strict):
    """Image↔ground point pairs for the floor plane (at least 4, in general position)."""

    image_points: list[Point2] = Field(description="floor points in the image, pixels [u, v]")
    ground_points: list[Point2] = Field(description="the same points on the ground, metres [x, y]")
    image_size: tuple[Annotated[int, Field(gt=0, le=MAX_IMAGE_SIDE)],
                      Annotated[int, Field(gt=0, le=MAX_IMAGE_SIDE)]] | None = Field(
        None, description="[width, height] of the frames in pixels; read from the source when omitted")
    focal_px: float | None = Field(
        None, gt=0, description="focal length in pixels; if omitted it is estimated from the homography "
                                "(square pixels, principal point at the image centre) for person heights")
    principal_point: Point2 | None = Field(None, description="[u, v] pixels; default: image centre")
    ransac_threshold_m: float = Field(0.5, gt=0, description="RANSAC inlier distance on the ground, metres "
                                                              "(used when more than 4 pairs are given)")
    max_cell_area_m2: float = Field(25.0, gt=0, description="density cells covering more ground than this "
                                                             "are too close to the horizon to count; masked")


class Camera(_Strict):
    id: Identifier
    source: str = Field(description="video file, image folder or stream URL; relative paths are relative "
                                    "to the site file")
    sampling: Sampling = Sampling()
    calibration: Calibration
    model: Literal["dense", "sparse", "auto"] = "auto"
    scale_normalise: bool = Field(
        False, description="resize bands of rows so people appear at the sparse model's trained "
                           "size (needs person heights from the calibration; far rows cost up to "
                           "9x the pixels)")
    head_height_m: float | None = Field(
        None, ge=0, le=3.0, description="height of the plane this camera's density is mapped through, "
                                        "metres; default: the site's head_height_m")
    tuning: str | None = Field(
        None, description="this camera's tuning file from `crowdsafe tune` (model, background, gain, "
                          "interval); relative paths are relative to the site file")
    full_frame: bool = Field(
        False, description="infer the whole frame; by default only the region this camera's zones "
                           "and lines read (plus the network's context margin) is inferred, and its "
                           "frame total counts the people in that region only")
    accept_floor_mapping: bool = Field(
        False, description="when this camera's pose cannot be known (no focal_px and none can be "
                           "estimated), map its density at the floor anyway; people then land metres "
                           "behind where they stand. Without it such a camera is refused")


class Exit(_Strict):
    name: str
    width_m: float = Field(gt=0)
    kind: Literal["level", "stairs"] = "level"


class Zone(_Strict):
    id: Identifier
    name: str | None = None
    polygon: list[Point2] = Field(min_length=3, description="ground polygon, metres, [[x, y], ...]")
    capacity: int | None = Field(None, ge=0, description="people the zone is licensed or planned for")
    type: ZoneType = "walkway"
    exits: list[Exit] = []
    los_profile: str | None = Field(None, description="LoS profile name; default chosen by zone type")

    @property
    def label(self) -> str:
        return self.name or self.id


class PassageMargins(_Strict):
    """A gate's passage given as how far it reaches beyond the gate's ends, along the line."""

    beyond_a_m: float = Field(ge=0, le=50, description="metres the passage reaches beyond a")
    beyond_b_m: float = Field(ge=0, le=50, description="metres the passage reaches beyond b")


class Line(_Strict):
    """A gate or counting line on the ground, a→b in metres.

    ``passage`` is where people crossing through the gate are counted: the wall-to-wall segment
    ([[x, y], [x, y]]) or margins beyond a and b. A density map blurs each person over more than a
    narrow gate, so the flux is integrated over the whole passage and attributed to the gate;
    without it, the line is extended past its ends by the density blur's ground footprint there.

    ``positive`` says which crossing counts as "in": ``left`` (default) means moving from the
    right-hand side of a→b to its left-hand side, as seen from above with the right-handed
    ground frame (the left normal of a→b is (-dy, dx)); ``right`` the opposite; or give a
    vector [nx, ny] pointing the way "in" goes (it must not be parallel to the line).
    """

    id: Identifier
    name: str | None = None
    a: Point2
    b: Point2
    width_m: float | None = Field(None, gt=0, description="clear width of the gate for p/m/min; "
                                                          "default: the length a→b")
    positive: Literal["left", "right"] | Point2 = "left"
    passage: tuple[Point2, Point2] | PassageMargins | None = Field(
        None, description="where the gate's crossings are counted: the wall-to-wall segment "
                          "[[x, y], [x, y]] or {beyond_a_m, beyond_b_m}; default: a→b extended by "
                          "the density blur's ground footprint, never into another line's passage")

    @property
    def length_m(self) -> float:
        return math.hypot(self.b[0] - self.a[0], self.b[1] - self.a[1])

    def positive_normal(self) -> Point2:
        """Unit normal of the line pointing the way a positive ('in') crossing moves."""
        dx, dy = self.b[0] - self.a[0], self.b[1] - self.a[1]
        length = math.hypot(dx, dy)
        left = (-dy / length, dx / length)
        if self.positive == "left":
            return left
        if self.positive == "right":
            return (-left[0], -left[1])
        side = 1.0 if self.positive[0] * left[0] + self.positive[1] * left[1] > 0 else -1.0
        return (side * left[0], side * left[1])


class BandSpec(_Strict):
    label: str
    below: float | None = Field(None, gt=0,
                                description="upper limit in p/m² (exclusive); omit on the last band")


class SafetyConfig(_Strict):
    profiles: dict[str, list[BandSpec]] = Field(
        {}, description="extra or overriding profiles; built-in: " + ", ".join(sorted(BUILTIN_PROFILES)))
    los_by_zone_type: dict[ZoneType, str] = Field(
        dict(DEFAULT_LOS_BY_ZONE_TYPE), description="LoS profile for each zone type")
    risk_profile: str = DEFAULT_RISK_PROFILE
    specific_flow_pmm: dict[Literal["level", "stairs"], Annotated[float, Field(gt=0)]] = Field(
        dict(GREEN_GUIDE_PMM), description="people per metre of exit width per minute, by exit "
        "kind, for zone clearance times (82 level / 66 stairs: UK venue guidance)")
    egress_limit_s: float = Field(EGRESS_TARGET_S, gt=0, description="clearance time that raises the "
                                  "egress alert (8 minutes by default)")

    def profile_book(self) -> ProfileBook:
        """The LoS/risk profiles: built-ins plus this file's own (the one place that builds them)."""
        custom = {name: Profile.from_limits(name, [b.label for b in bands],
                                            [b.below for b in bands[:-1] if b.below is not None])
                  for name, bands in self.profiles.items()}
        return ProfileBook.build(custom, dict(self.los_by_zone_type), self.risk_profile)


class Staffing(BaseModel):
    """Staffing policy: how many stewards and medics a forecast crowd needs.

    No standard fixes these ratios: venues, licensing authorities and guidance (e.g. the UK
    Green Guide's "adequate numbers") leave them to a risk assessment, so every number here is
    the site's policy, never a built-in truth. A zone's stewards in a time slot are
    ``max(min_stewards, ceil(people / people_per_steward for its type))`` plus
    ``extra_by_los[band]`` for the zone's forecast Level-of-Service band; a closed zone (forecast
    below ``open_at_people``) needs none. Medics are site-wide: ``max(min_medics,
    ceil(total people / people_per_medic))``. ``people`` is the forecast bound named by
    ``forecast_bound`` (an upper bound, because being short-staffed is the costly error).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # a typo is an error
    people_per_steward: float | None = Field(None, gt=0, description="default people per steward, for "
                                                                      "zone types without their own ratio")
    min_stewards: int | None = Field(None, ge=0, description="stewards in every open zone, however empty")
    people_per_steward_by_type: dict[ZoneType, Annotated[float, Field(gt=0)]] = Field(
        {}, description="people per steward by zone type, e.g. {queue: 100, walkway: 250, standing: 200}")
    extra_by_los: dict[str, Annotated[int, Field(ge=0)]] = Field(
        {}, description="extra stewards per zone when its forecast density is in this LoS band, "
                        "e.g. {D: 1, E: 2, F: 4}")
    people_per_medic: float | None = Field(None, gt=0, description="site-wide: one medic per this many "
                                                                   "people on site")
    min_medics: int = Field(0, ge=0, description="medics on duty whenever anyone is on site")
    forecast_bound: Literal["mean", "hi80", "hi95"] = Field(
        "hi80", description="which forecast value staffing is planned from")
    open_at_people: float = Field(1.0, ge=0, description="a zone forecast to hold fewer people than this "
                                                         "is treated as closed (no stewards)")
    planned_stewards: dict[str, Annotated[int, Field(ge=0)]] = Field(
        {}, description="stewards actually planned per zone id, compared with the policy in the report")

    def steward_ratio(self, zone_type: str) -> float | None:
        """People per steward for a zone type; None when the policy gives no ratio at all."""
        return self.people_per_steward_by_type.get(zone_type, self.people_per_steward)


class ScheduleEvent(BaseModel):
    """One event of the day; its times shape the forecast (ingress before start, egress after end).

    Times without a UTC offset are read as UTC (readings are stored in UTC epoch seconds); write
    ``2026-06-01T19:00:00+02:00`` for local time. ``doors_open`` is when people may enter (arrivals
    before it queue); ``breaks`` are intervals (half-time, intermission) when part of the audience
    moves to walkways, bars and toilets; ``zones`` limits the event to some zones (default: all).
    ``arrival_mean_min`` is how long before ``start`` the average person arrives and
    ``egress_min`` the time constant of leaving after ``end``: both tune the schedule profile.
    ``series`` names the event's recurring series (``nye-fireworks``, ``home-match``): the
    forecaster learns the series' effect on each zone from the stored readings of its earlier
    occurrences, and uses the attendance-scaled arrival curve only while it has none.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # a typo is an error
    name: str
    start: datetime
    end: datetime | None = None
    expected_attendance: int | None = Field(None, ge=0)
    doors_open: datetime | None = None
    breaks: list[tuple[datetime, datetime]] = Field([], description="[[start, end], ...] of each break")
    zones: list[str] | None = None
    arrival_mean_min: float = Field(35.0, gt=0)
    egress_min: float = Field(8.0, gt=0)
    series: str | None = Field(None, min_length=1, max_length=80, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                               description="recurring series this event belongs to (letters, digits, - _ .)")

    @staticmethod
    def epoch(value: datetime) -> float:
        """UTC epoch seconds; a time without offset is UTC (see the class docstring)."""
        return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).timestamp()

    @model_validator(mode="after")
    def _times_in_order(self) -> ScheduleEvent:
        start = self.epoch(self.start)
        if self.doors_open is not None and self.epoch(self.doors_open) > start:
            raise ValueError("doors_open must not be after start")
        if self.breaks and self.end is None:
            raise ValueError("breaks need an end time for the event")
        for b_start, b_end in self.breaks:
            if not start <= self.epoch(b_start) < self.epoch(b_end) <= self.epoch(self.end):
                raise ValueError("each break must lie within start..end and end after it starts")
        return self


class Site(_Strict):
    name: str
    timezone: str = Field("UTC", description="the site's IANA time zone, e.g. Europe/London: the debrief "
                                              "shows times in it, with UTC alongside")
    head_height_m: float = Field(
        1.6, ge=0, le=3.0, description="height above the floor of the heads the counting models put each "
                                       "person's density at, metres (0 maps density at the floor)")
    cameras: list[Camera] = Field(min_length=1)
    zones: list[Zone] = []
    lines: list[Line] = []
    safety: SafetyConfig = SafetyConfig()
    staffing: Staffing | None = None
    schedule: list[ScheduleEvent] = []

    _base_dir: Path | None = PrivateAttr(None)

    def camera(self, camera_id: str) -> Camera:
        for cam in self.cameras:
            if cam.id == camera_id:
                return cam
        raise KeyError(f"no camera {camera_id!r} in site {self.name!r}; cameras: "
                       f"{', '.join(c.id for c in self.cameras)}")

    def head_height_for(self, camera: Camera) -> float:
        """The density plane's height for one camera: its own setting, else the site's."""
        return self.head_height_m if camera.head_height_m is None else camera.head_height_m

    def resolve_path(self, path: str) -> Path:
        """A file named in the site file (e.g. a camera's tuning), relative to the site file."""
        if self._base_dir is None or Path(path).is_absolute():
            return Path(path)
        return self._base_dir / path

    def resolve_source(self, camera: Camera) -> str:
        """The camera's source with a relative file path taken relative to the site file."""
        if "://" in camera.source or self._base_dir is None or Path(camera.source).is_absolute():
            return camera.source
        return str(self._base_dir / camera.source)


def parse_duration(text: str) -> float:
    """'5s' -> 5.0, '500ms' -> 0.5, '2min' or '2m' -> 120.0; ValueError otherwise."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. '500ms', '5s', '2min', '1h')")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_\-]+$")


def field_path(loc: Iterable[Any]) -> str:
    """('cameras', 2, 'calibration') -> 'cameras[2].calibration'.

    A key that is not a plain name (a typo'd key with a newline, a colon or a dot in it) is
    quoted, so the path stays one unambiguous line.
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part)
            out += ("." if out else "") + (text if _PLAIN_KEY.match(text) else repr(text))
    return out or "(top level)"


def _pydantic_problems(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        # Union members add their type name to loc ('tuple[float, float]'); drop those for readability.
        loc = [p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in {"str", "literal"}))]
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (typo?)"
        elif err["type"] == "missing":
            msg = "required field is missing"
        msg = " ".join(str(msg).split())  # one line per problem, whatever the input held
        problems.append(f"{field_path(loc)}: {msg[:1].lower() + msg[1:]}")
    return list(dict.fromkeys(problems))


def _duplicates(ids: list[str], what: str) -> list[str]:
    seen: dict[str, int] = {}
    problems = []
    for i, ident in enumerate(ids):
        if ident in seen:
            problems.append(f"{what}[{i}].id: duplicate id {ident!r} (also {what}[{seen[ident]}])")
        else:
            seen[ident] = i
    return problems


def _polygon_problem(points: list[Point2]) -> str | None:
    try:
        poly = shapely.Polygon(points)
    except shapely.errors.GEOSException as exc:
        return f"polygon is invalid ({exc})"
    if not poly.is_valid:
        reason = explain_validity(poly)
        if "Self-intersection" in reason or "Ring Self-intersection" in reason:
            return f"polygon is self-intersecting ({reason}); list the corners in order around the zone"
        return f"polygon is invalid ({reason})"
    if poly.area <= 1e-9:
        return "polygon has zero area"
    return None


def _calibration_problems(i: int, cal: Calibration) -> list[str]:
    path = f"cameras[{i}].calibration"
    problems = []
    n_img, n_gnd = len(cal.image_points), len(cal.ground_points)
    if n_img != n_gnd:
        problems.append(f"{path}.ground_points: {n_gnd} ground points for {n_img} image points; "
                        "they are pairs and must match one to one")
    for name, pts in (("image_points", cal.image_points), ("ground_points", cal.ground_points)):
        if len(pts) < 4:
            problems.append(f"{path}.{name}: need at least 4 non-collinear points, got {len(pts)}")
        if not np.all(np.isfinite(np.asarray(pts, dtype=float))):
            problems.append(f"{path}.{name}: points must be finite numbers")
    if cal.image_size is not None:
        w, h = cal.image_size
        outside = [k for k, (u, v) in enumerate(cal.image_points) if not (0 <= u <= w and 0 <= v <= h)]
        if outside:
            problems.append(f"{path}.image_points: points {outside} lie outside the {w}x{h} image")
    return problems


def _safety_problems(site: Site) -> list[str]:
    problems = []
    names = set(BUILTIN_PROFILES) | set(site.safety.profiles)
    for name, bands in site.safety.profiles.items():
        path = f"safety.profiles.{name}"
        if not bands:
            problems.append(f"{path}: needs at least one band")
            continue
        limits = [b.below for b in bands]
        if limits[-1] is not None or any(lim is None for lim in limits[:-1]):
            problems.append(f"{path}: every band but the last needs 'below'; the last must not have it")
        elif any(not a < b for a, b in itertools.pairwise(limits[:-1])):
            problems.append(f"{path}: band limits must increase, got {limits[:-1]}")
        labels = [b.label for b in bands]
        if len(set(labels)) != len(labels):
            problems.append(f"{path}: band labels repeat: {labels}")
    for ztype, name in site.safety.los_by_zone_type.items():
        if name not in names:
            problems.append(f"safety.los_by_zone_type.{ztype}: unknown profile {name!r}; "
                            f"known: {sorted(names)}")
    if site.safety.risk_profile not in names:
        problems.append(f"safety.risk_profile: unknown profile {site.safety.risk_profile!r}; "
                        f"known: {sorted(names)}")
    for i, zone in enumerate(site.zones):
        if zone.los_profile is not None and zone.los_profile not in names:
            problems.append(f"zones[{i}].los_profile: unknown profile {zone.los_profile!r}; "
                            f"known: {sorted(names)}")
    return problems


def _staffing_problems(site: Site) -> list[str]:
    """Every ``extra_by_los`` key must be a band label of a LoS profile the site can use."""
    if site.staffing is None or not site.staffing.extra_by_los:
        return []
    profiles = {**BUILTIN_PROFILES}
    labels = {b.label for name in ("fruin_walkway", "fruin_queue") if name in profiles
              for b in profiles[name].bands}
    labels |= {b.label for bands in site.safety.profiles.values() for b in bands}
    labels |= {b.label for name in set(site.safety.los_by_zone_type.values())
               | {z.los_profile for z in site.zones if z.los_profile} if name in profiles
               for b in profiles[name].bands}
    return [f"staffing.extra_by_los.{key}: not a Level of Service band; known: {', '.join(sorted(labels))}"
            for key in site.staffing.extra_by_los if key not in labels]


def _timezone_problems(site: Site) -> list[str]:
    try:
        ZoneInfo(site.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return [f"timezone: unknown time zone {site.timezone!r}; give an IANA name such as Europe/London "
                "or UTC"]
    return []


def site_problems(site: Site) -> list[str]:
    """Cross-field checks pydantic's per-field types cannot express, each with its field path."""
    problems = _duplicates([c.id for c in site.cameras], "cameras")
    problems += _duplicates([z.id for z in site.zones], "zones")
    problems += _duplicates([ln.id for ln in site.lines], "lines")
    for i, cam in enumerate(site.cameras):
        problems += _calibration_problems(i, cam.calibration)
    for i, zone in enumerate(site.zones):
        if (reason := _polygon_problem(zone.polygon)) is not None:
            problems.append(f"zones[{i}].polygon: {reason}")
        names = [e.name for e in zone.exits]
        if len(set(names)) != len(names):
            problems.append(f"zones[{i}].exits: exit names repeat: {names}")
    for i, line in enumerate(site.lines):
        if line.length_m < 0.05:
            problems.append(f"lines[{i}]: a and b are {line.length_m:.3f} m apart; a line needs two distinct "
                            "ends (at least 5 cm)")
            continue
        if isinstance(line.passage, tuple):
            (px, py), (qx, qy) = line.passage
            plen = math.hypot(qx - px, qy - py)
            if plen < 0.05:
                problems.append(f"lines[{i}].passage: its ends are {plen:.3f} m apart; a passage needs two "
                                "distinct ends (at least 5 cm)")
            else:
                mx, my = (line.a[0] + line.b[0]) / 2, (line.a[1] + line.b[1]) / 2
                gap = float(shapely.LineString(line.passage).distance(shapely.Point(mx, my)))
                if gap > 1.0:
                    problems.append(f"lines[{i}].passage: passes {gap:.1f} m from the gate's middle; it must "
                                    "run through the gate (the wall-to-wall segment the gate is in)")
        if not isinstance(line.positive, str):
            nx, ny = line.positive
            dx, dy = line.b[0] - line.a[0], line.b[1] - line.a[1]
            if math.hypot(nx, ny) == 0 or abs(-dy * nx + dx * ny) < 1e-6 * math.hypot(nx, ny) * line.length_m:
                problems.append(f"lines[{i}].positive: direction {list(line.positive)} is parallel to the "
                                "line (or zero); it must point across it")
    for i, event in enumerate(site.schedule):
        if event.end is not None and event.epoch(event.end) <= event.epoch(event.start):
            problems.append(f"schedule[{i}].end: must be after start")
    return problems + _safety_problems(site) + _staffing_problems(site) + _timezone_problems(site)


def parse_site(data: Any, source: str | None = None, base_dir: Path | None = None) -> Site:
    """A validated Site from already-parsed YAML/JSON data; SiteError lists every problem."""
    if not isinstance(data, dict):
        raise SiteError([f"(top level): expected a mapping with name, cameras, zones, ...; got "
                         f"{type(data).__name__}"], source)
    try:
        site = Site.model_validate(data)
    except ValidationError as exc:
        raise SiteError(_pydantic_problems(exc), source) from None
    problems = site_problems(site)
    if problems:
        raise SiteError(problems, source)
    site._base_dir = base_dir
    return site


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    """One line saying where the YAML broke: 'invalid YAML at line 3, column 7: <reason>'."""
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        where = f"line {mark.line + 1}, column {mark.column + 1}"
    elif isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow (NUL, BOM inside...)
        before = text[:exc.position]
        where = f"line {before.count(chr(10)) + 1}, column {len(before) - before.rfind(chr(10))}"
    else:
        where = "(unknown place)"
    reason = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc).splitlines()[0]
    if isinstance(exc, yaml.reader.ReaderError) and isinstance(exc.character, int):
        reason = f"character #x{exc.character:04x} is not allowed ({reason})"
    return f"invalid YAML at {where}: {' '.join(str(reason).split())}"


class _SiteLoader(yaml.SafeLoader):
    """Safe YAML that leaves timestamps as text: YAML's own reading of ``2026-06-01T25:00:00`` fails
    with "hour must be in 0..23" and no field; the schema then parses the text and names the field."""


_SiteLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def load_site(path: str | Path) -> Site:
    """Read and validate a site file; SiteError names the field path and reason of each problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SiteError(["file not found"], str(path)) from None
    except IsADirectoryError:
        raise SiteError(["is a folder, not a site file; give the path of the .yaml file"],
                        str(path)) from None
    except UnicodeDecodeError as exc:
        raise SiteError([f"not a text file (byte {exc.object[exc.start]:#04x} at offset {exc.start} is "
                         "not UTF-8); a site file is YAML text, see `crowdsafe site schema`"],
                        str(path)) from None
    except OSError as exc:
        raise SiteError([f"cannot read: {exc.strerror or exc}"], str(path)) from None
    try:
        data = yaml.load(text, Loader=_SiteLoader)
        return parse_site(data, str(path), path.resolve().parent)
    except yaml.YAMLError as exc:
        raise SiteError([_yaml_problem(exc, text)], str(path)) from None
    except RecursionError:  # the YAML reader and the validator recurse once per level of nesting
        raise SiteError(["(top level): lists or mappings nested too deeply to read"], str(path)) from None


def site_json_schema() -> dict[str, Any]:
    """JSON Schema of the site file, for editors and for documentation."""
    schema = Site.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "crowdsafe site file"
    return schema
