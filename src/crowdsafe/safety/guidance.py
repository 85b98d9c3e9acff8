"""Crowd-flow policy numbers from UK venue guidance, named once.

The *Guide to Safety at Sports Grounds* (the "Green Guide", SGSA, 6th ed., 2018) takes 82 people
per metre of clear width per minute on level ways and 66 on stepped ones (stairs); 8 minutes is a
common egress-time design criterion for standing areas (guidance gives ranges by venue: it is
policy, like staffing ratios). Config defaults, clearance times, alert rules and the report read
these names; a site overrides them in ``safety.specific_flow_pmm`` and ``safety.egress_limit_s``.
This module imports nothing from crowdsafe, so config may read it.
"""

from __future__ import annotations

#: People per metre of clear width per minute on level ways (walkways, gates, exits).
GREEN_GUIDE_LEVEL_PMM = 82.0
#: People per metre of clear width per minute on stepped ways (stairs).
GREEN_GUIDE_STAIRS_PMM = 66.0
#: Both rates by exit kind; copy before changing.
GREEN_GUIDE_PMM: dict[str, float] = {"level": GREEN_GUIDE_LEVEL_PMM, "stairs": GREEN_GUIDE_STAIRS_PMM}
#: Clearance time (s) a zone's crowd should pass its exits within: 8 minutes.
EGRESS_TARGET_S = 8 * 60.0
