"""Where alert changes go, and the text they carry; the rules themselves are ``safety.rules``.

Messages name the zone, the number in its unit, how long and the limit (``site_messages``).
Every change is saved to the store (through the writer, so a database outage does not lose it),
logged, and posted to the webhooks.
"""

from __future__ import annotations

import logging
import threading

from crowdsafe.config.site import Site
from crowdsafe.notify.webhooks import WebhookNotifier
from crowdsafe.runtime.writer import StoreWriter
from crowdsafe.safety.alerts import Alert, AlertEngine, AlertRule, Describe
from crowdsafe.safety.messages import MessageBook

log = logging.getLogger(__name__)

def site_messages(site: Site) -> MessageBook:
    """Alert text for ``site``: zone and line names, each zone's LoS profile, the risk profile."""
    book = site.safety.profile_book()
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
            refreshed = [a for a in self.engine.take_refreshed() if a not in changed]
        for alert in changed:
            self._dispatch(alert)
        for alert in refreshed:  # the message kept current: saved, not announced again
            self.writer.save_alert(alert.as_row())
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
