"""Level-of-Service and risk tables as named profiles, so thresholds are data, not code.

Why and how: docs/design-notes.md, ``crowdsafe.safety.profiles``."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

ZoneType = Literal["walkway", "queue", "standing"]


@dataclass(frozen=True)
class Band:
    """One band of a profile: densities in [previous upper, ``upper``) p/m² get ``label``."""

    label: str
    upper: float = math.inf


@dataclass(frozen=True)
class Profile:
    """An ordered table of bands covering every density from 0 p/m² upwards."""

    name: str
    bands: tuple[Band, ...]
    description: str = ""

    def __post_init__(self) -> None:
        if not self.bands:
            raise ValueError(f"profile {self.name}: needs at least one band")
        uppers = [b.upper for b in self.bands]
        if any(not a < b for a, b in itertools.pairwise(uppers)):
            raise ValueError(f"profile {self.name}: band limits must increase strictly, got {uppers}")
        if not math.isinf(uppers[-1]):
            raise ValueError(f"profile {self.name}: the last band must be open-ended")
        if uppers[0] <= 0:
            raise ValueError(f"profile {self.name}: the first band limit must be positive")
        labels = [b.label for b in self.bands]
        if len(set(labels)) != len(labels):
            raise ValueError(f"profile {self.name}: band labels repeat: {labels}")

    def classify(self, density: float) -> str | None:
        """The band label for a density in p/m²; None when the density is unknown (NaN)."""
        if density is None or math.isnan(density):
            return None
        for band in self.bands:
            if density < band.upper:
                return band.label
        return self.bands[-1].label

    @classmethod
    def from_limits(cls, name: str, labels: Sequence[str], limits: Sequence[float],
                    description: str = "") -> Profile:
        """Labels and the len(labels) - 1 upper limits between them."""
        if len(limits) != len(labels) - 1:
            raise ValueError(f"profile {name}: {len(labels)} labels need {len(labels) - 1} limits")
        uppers = [*limits, math.inf]
        return cls(name, tuple(Band(lab, float(up)) for lab, up in zip(labels, uppers, strict=True)),
                   description)


LOS_LETTERS = ("A", "B", "C", "D", "E", "F")

#: Fruin (1971) walkway Level of Service, p/m².
FRUIN_WALKWAY = Profile.from_limits(
    "fruin_walkway", LOS_LETTERS, (0.31, 0.43, 0.72, 1.08, 2.15),
    "Fruin walkway Level of Service (people moving through)")
#: Fruin (1971) queueing Level of Service, p/m².
FRUIN_QUEUE = Profile.from_limits(
    "fruin_queue", LOS_LETTERS, (0.83, 1.11, 1.43, 3.33, 5.0),
    "Fruin queue Level of Service (people waiting or standing)")
#: Crowd-safety risk scale: movement slows near 2 p/m², a moving crowd is critical near 4,
#: and 5 or more p/m² is dangerous whatever the crowd does.
RISK_2_4_5 = Profile.from_limits(
    "risk_2_4_5", ("normal", "slowed", "critical", "dangerous"), (2.0, 4.0, 5.0),
    "risk bands: normal <2, slowed 2-4, critical 4-5, dangerous >=5 p/m²")

BUILTIN_PROFILES: dict[str, Profile] = {p.name: p for p in (FRUIN_WALKWAY, FRUIN_QUEUE, RISK_2_4_5)}

#: Which LoS table applies to a zone type unless the site says otherwise. Standing areas use
#: the queue table: people there are stationary and closely spaced, as in a queue.
DEFAULT_LOS_BY_ZONE_TYPE: dict[ZoneType, str] = {
    "walkway": "fruin_walkway", "queue": "fruin_queue", "standing": "fruin_queue"}
DEFAULT_RISK_PROFILE = "risk_2_4_5"


@dataclass(frozen=True)
class ProfileBook:
    """The profiles one site uses: built-ins plus the site's own, and which applies where."""

    profiles: Mapping[str, Profile] = field(default_factory=lambda: dict(BUILTIN_PROFILES))
    los_by_zone_type: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_LOS_BY_ZONE_TYPE))
    risk_profile: str = DEFAULT_RISK_PROFILE

    def __post_init__(self) -> None:
        for name in [*self.los_by_zone_type.values(), self.risk_profile]:
            if name not in self.profiles:
                raise ValueError(f"unknown profile {name!r}; known: {sorted(self.profiles)}")

    @classmethod
    def build(cls, custom: Mapping[str, Profile] | None = None,
              los_by_zone_type: Mapping[str, str] | None = None,
              risk_profile: str | None = None) -> ProfileBook:
        """Built-ins overridden/extended by ``custom``; zone-type mapping merged over the default."""
        return cls(profiles={**BUILTIN_PROFILES, **(custom or {})},
                   los_by_zone_type={**DEFAULT_LOS_BY_ZONE_TYPE, **(los_by_zone_type or {})},
                   risk_profile=risk_profile or DEFAULT_RISK_PROFILE)

    def los_profile(self, zone_type: str, override: str | None = None) -> Profile:
        name = override or self.los_by_zone_type.get(zone_type)
        if name is None or name not in self.profiles:
            raise ValueError(f"no LoS profile for zone type {zone_type!r} (override {override!r})")
        return self.profiles[name]

    @property
    def risk(self) -> Profile:
        return self.profiles[self.risk_profile]
