"""Default alert rules for a site without its own, and where alert changes go.

Site files do not configure alerts yet, so the runner ships rules built on the guidance in
DESIGN.md. They watch ranks within the site's own LoS and risk profiles rather than fixed p/m²
numbers, so a site that overrides a profile moves its alerts with it:

- ``risk_slowed`` / ``risk_critical``: a zone at risk band 1+ (2 p/m² on the default 2/4/5
  scale) / 2+ (4 p/m²) for 10 s;
- ``los_e``: a zone at LoS E or worse for 10 s (6-letter profiles);
- ``capacity_90`` / ``capacity_100``: count at 90 % / 100 % of the zone's capacity;
- ``surge``: a zone gaining 30+ people per minute over the last minute;
- ``line_flow``: a line above 82 p/m/min (level walkway capacity) for 10 s, cleared under 66;
- ``camera_stale``: no frame from a camera for 30 s;
- ``egress_time_warning`` / ``egress_time``: a zone's clearance time through its exits at 75 % /
  100 % of the site's ``safety.egress_limit_s`` (8 min by default), see ``simulate.clearance``;
- ``capacity_forecast``: a zone forecast (80 % upper bound) to pass its capacity within 30 min,
  see ``forecast.alerts``.

Hysteresis (clear below a lower value) and hold times keep noisy readings from flapping: zone
rules hold ``ZONE_HOLD_S`` before they raise and as long below the clear level before they clear,
and a zone rule that comes back within ``COOLDOWN_S`` of clearing reopens its alert (one more
occurrence) instead of raising another. Messages name the zone, the number in its unit, how long
and the limit (``site_messages``). Every change is saved to the store (through the writer, so a
database outage does not lose it), logged, and posted to the webhooks.
"""

from __future__ import annotations

import logging
import threading

from crowdsafe.config.site import Site
from crowdsafe.forecast.alerts import forecast_alert_rules
from crowdsafe.notify.webhooks import WebhookNotifier
from crowdsafe.runtime.writer import StoreWriter
from crowdsafe.safety.alerts import Alert, AlertEngine, AlertRule, Describe
from crowdsafe.safety.messages import MessageBook
from crowdsafe.safety.profiles import Profile, ProfileBook
from crowdsafe.simulate.clearance import EGRESS_THRESHOLD_S, egress_alert_rules

log = logging.getLogger(__name__)

#: Level walkway capacity (p/m/min) from venue guidance; stairs are 66.
LINE_FLOW_PMM = 82.0
STALE_CAMERA_S = 30.0
#: Least seconds a zone condition must last before it raises, and be gone before it clears.
ZONE_HOLD_S = 20.0
#: A zone or line condition back within this many seconds of clearing reopens the same alert.
COOLDOWN_S = 300.0


def default_rules(site: Site | None = None) -> list[AlertRule]:
    """The rules above; ``site`` sets the egress limit (default 8 minutes)."""
    egress_s = site.safety.egress_limit_s if site is not None else EGRESS_THRESHOLD_S
    hold, cool = ZONE_HOLD_S, COOLDOWN_S
    return [*egress_alert_rules(egress_s), *forecast_alert_rules(),
        AlertRule("risk_slowed", "risk_rank", raise_at=1, clear_at=1, min_duration_s=hold, severity="warning",
                  cooldown_s=cool),
        AlertRule("risk_critical", "risk_rank", raise_at=2, clear_at=2, min_duration_s=10,
                  clear_hold_s=hold, severity="critical", cooldown_s=cool),
        AlertRule("los_e", "los_rank", raise_at=4, clear_at=4, min_duration_s=hold, severity="warning",
                  cooldown_s=cool),
        AlertRule("capacity_90", "capacity_pct", raise_at=90, clear_at=80, min_duration_s=hold,
                  severity="warning", cooldown_s=cool),
        AlertRule("capacity_100", "capacity_pct", raise_at=100, clear_at=95, min_duration_s=5,
                  clear_hold_s=hold, severity="critical", cooldown_s=cool),
        AlertRule("surge", "count", raise_at=30, clear_at=10, rate_window_s=60, severity="warning",
                  clear_hold_s=hold, cooldown_s=cool),
        AlertRule("line_flow", "flow_pmm", raise_at=LINE_FLOW_PMM, clear_at=66, min_duration_s=10,
                  clear_hold_s=hold, severity="warning", cooldown_s=cool),
        AlertRule("camera_stale", "stale_s", raise_at=STALE_CAMERA_S, clear_at=5, severity="critical"),
    ]


def site_messages(site: Site) -> MessageBook:
    """Alert text for ``site``: zone and line names, each zone's LoS profile, the risk profile."""
    custom = {name: Profile.from_limits(name, [b.label for b in bands],
                                        [b.below for b in bands[:-1] if b.below is not None])
              for name, bands in site.safety.profiles.items()}
    book = ProfileBook.build(custom, dict(site.safety.los_by_zone_type), site.safety.risk_profile)
    names = {z.id: z.name or z.id for z in site.zones} | {ln.id: ln.name or ln.id for ln in site.lines}
    los = {}
    for zone in site.zones:
        try:
            los[zone.id] = book.los_profile(zone.type, zone.los_profile)
        except ValueError:  # a site check error elsewhere; the message falls back to plain text
            continue
    return MessageBook(names=names, los=los, risk=book.risk, camera_ids=frozenset(c.id for c in site.cameras))


class AlertSink:
    """Feeds metrics to the rules (from any thread) and dispatches the alerts that changed."""

    def __init__(self, rules: list[AlertRule], writer: StoreWriter, site_name: str,
                 notifier: WebhookNotifier | None = None, describe: Describe | None = None) -> None:
        self.engine = AlertEngine(rules, describe)
        self.writer = writer
        self.site_name = site_name
        self.notifier = notifier
        self.changes = 0
        self._lock = threading.Lock()

    def update(self, subject: str, metric: str, ts: float, value: float) -> list[Alert]:
        with self._lock:
            changed = self.engine.update(subject, metric, ts, value)
        for alert in changed:
            self._dispatch(alert)
        return changed

    def _dispatch(self, alert: Alert) -> None:
        self.changes += 1
        row = alert.as_row()
        self.writer.save_alert(row)
        level = logging.WARNING if alert.state == "raised" else logging.INFO
        log.log(level, "alert %s: %s %s (%s): %s", alert.state, alert.rule, alert.subject, alert.severity,
                alert.message)
        if self.notifier is not None:
            self.notifier.send({"site": self.site_name, "alert": row})

    def close(self) -> None:
        if self.notifier is not None:
            self.notifier.close()
