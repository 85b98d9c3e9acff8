"""``crowdsafe simulate SITE.yaml --zone ID --people N``: how long would this zone take to clear?

Always the flow formula (a lower bound, milliseconds); with ``--jupedsim`` also an agent
simulation of the zone's polygon (seconds to minutes, needs the optional jupedsim package).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer

from crowdsafe.cli.console import stdout_console
from crowdsafe.cli.errors import fail, user_errors
from crowdsafe.config.site import load_site
from crowdsafe.safety.guidance import (
    EGRESS_TARGET_S,
    GREEN_GUIDE_LEVEL_PMM,
    GREEN_GUIDE_PMM,
    GREEN_GUIDE_STAIRS_PMM,
)
from crowdsafe.simulate.clearance import clearance_time, egress_capacity, exit_flow_pm


def simulate(
    site_path: Annotated[Path, typer.Argument(metavar="SITE.yaml", help="Site file.")],
    zone: Annotated[str, typer.Option(help="Zone id.")],
    people: Annotated[int | None, typer.Option(
        min=0, help="People in the zone; default its capacity.")] = None,
    level_flow: Annotated[float | None, typer.Option(
        min=1, help="Specific flow on the level, p/m/min; default the site's safety.specific_flow_pmm "
                    f"(built-in {GREEN_GUIDE_LEVEL_PMM:.0f}).", show_default=False)] = None,
    stairs_flow: Annotated[float | None, typer.Option(
        min=1, help="Specific flow on stairs, p/m/min; default the site's "
                    f"(built-in {GREEN_GUIDE_STAIRS_PMM:.0f}).", show_default=False)] = None,
    threshold: Annotated[float | None, typer.Option(
        min=1, help="Egress time limit, seconds; default the site's safety.egress_limit_s "
                    f"(built-in {EGRESS_TARGET_S:.0f}).", show_default=False)] = None,
    jupedsim: Annotated[bool, typer.Option(
        "--jupedsim", help="Also run a JuPedSim agent simulation.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the JuPedSim start positions.")] = 0,
    cache: Annotated[bool, typer.Option(
        help="Reuse and keep JuPedSim results in the user cache (clearance.json).")] = True,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result as JSON here.")] = None,
) -> None:
    """Clearance time of one zone at a given occupancy through its exits."""
    with user_errors():
        site = load_site(site_path)
        match = [z for z in site.zones if z.id == zone]
        if not match:
            raise fail(f"no zone {zone!r}; zones: {', '.join(z.id for z in site.zones)}")
        z = match[0]
        n = people if people is not None else z.capacity
        if n is None:
            raise fail(f"zone {zone} has no capacity; give --people")
        if not z.exits:
            raise fail(f"zone {zone} has no exits in the site file; clearance is undefined")
        flows = {**GREEN_GUIDE_PMM, **site.safety.specific_flow_pmm}
        flows.update({k: v for k, v in (("level", level_flow), ("stairs", stairs_flow)) if v is not None})
        threshold = threshold if threshold is not None else site.safety.egress_limit_s
        result: dict[str, object] = {
            "zone": z.id, "people": n, "exit_flow_pm": round(exit_flow_pm(z.exits, flows), 1),
            "flow_clearance_s": round(clearance_time(n, z.exits, flows), 1),
            "threshold_s": threshold,
            "people_at_threshold": round(egress_capacity(z.exits, threshold, flows)),
        }
        if jupedsim:
            from crowdsafe.simulate.jupedsim_model import (
                JuPedSimUnavailable,
                cached_clearance,
                clearance_cache_file,
                simulate_clearance,
            )

            cache_file = clearance_cache_file() if cache else None
            result["jupedsim_cached"] = cached_clearance(z.polygon, z.exits, n, seed,
                                                         cache_file=cache_file) is not None
            try:
                seconds = simulate_clearance(z.polygon, z.exits, n, seed, cache_file=cache_file)
            except JuPedSimUnavailable as exc:
                raise fail(str(exc)) from None
            result["jupedsim_clearance_s"] = round(seconds, 1) if math.isfinite(seconds) else None
    console = stdout_console()
    flow_s = float(result["flow_clearance_s"])  # type: ignore[arg-type]
    verdict = "over" if flow_s > threshold else "within"
    console.print(f"zone {z.id}: {n} people, exits pass {result['exit_flow_pm']} p/min -> "
                  f"flow clearance {flow_s:.0f} s ({verdict} the {threshold:.0f} s limit; "
                  f"{result['people_at_threshold']} people clear in {threshold:.0f} s)")
    if "jupedsim_clearance_s" in result:
        sim_s = result["jupedsim_clearance_s"]
        console.print(f"JuPedSim (collision-free speed model, seed {seed}"
                      f"{', cached' if result['jupedsim_cached'] else ''}): "
                      + (f"{sim_s} s" if sim_s is not None else "not clear within 30 min"))
    if json_out is not None:
        json_out.write_text(json.dumps(result, indent=2))
