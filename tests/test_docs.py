"""The README fits a first screen and every section that moved to the manual is one click away (issue 30).

``mkdocs build --strict`` (scripts/test.sh) checks the links inside ``docs/``; the README is not
part of the manual, so its links are checked here: each names a file that exists and, with an
anchor, a heading that file has.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: Each README section that moved, and the page that now holds it under the same heading.
MOVED = {
    "Commands": "docs/commands.md",
    "Sites: cameras, zones and lines in metres": "docs/sites.md",
    "Where people are: validated end to end (`crowdsafe eval-site`)": "docs/sites.md",
    "Running a site": "docs/running.md",
    "API, dashboard and tokens": "docs/running.md",
    "The demo": "docs/running.md",
    "Air-gapped installs": "docs/running.md",
    "Measured: cameras per machine, memory, API under load, line flow": "docs/results/running.md",
    "Forecast, staffing and clearance": "docs/forecast.md",
    "The event debrief": "docs/debrief.md",
    "How counting works": "docs/counting.md",
    "Accuracy": "docs/results/accuracy.md",
    "Counts on a real camera: background density and per-camera tuning": "docs/results/accuracy.md",
    "Speed": "docs/results/speed.md",
    "int8 for the sparse model": "docs/results/speed.md",
    "Scaling out": "docs/scaling-out.md",
    "Known limits": "docs/limits.md",
    "Data and credits": "docs/credits.md",
    "Development": "docs/development.md",
}


def slug(heading: str) -> str:
    """The anchor GitHub and MkDocs (``toc``'s default) give a heading: lower case, punctuation
    dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "").strip().lower())
    return re.sub(r"\s+", "-", text)


def headings(path: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return [m.group(1).strip() for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)]


def readme_links() -> list[tuple[str, str]]:
    """(file, anchor) of every relative link in the README; file '' for an anchor in the README."""
    found = []
    for target in re.findall(r"\]\(([^)\s]+)\)", README.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        found.append((file, anchor))
    return found


def test_the_readme_fits_a_first_screen():
    assert len(README.read_text(encoding="utf-8").splitlines()) < 200


def test_every_relative_readme_link_names_a_file_and_a_heading_that_exist():
    broken = []
    for file, anchor in readme_links():
        path = ROOT / file if file else README
        if not path.exists():
            broken.append(f"{file}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in {slug(h) for h in headings(path)}:
            broken.append(f"{file}#{anchor}: no such heading")
    assert not broken, "README links:\n" + "\n".join(broken)


def test_every_moved_section_is_one_click_from_the_readme():
    links = set(readme_links())
    missing = []
    for title, page in MOVED.items():
        if title not in headings(ROOT / page):
            missing.append(f"{page} has no heading {title!r}")
        elif (page, "") not in links and (page, slug(title)) not in links:
            missing.append(f"README does not link {page} (for {title!r})")
    assert not missing, "\n".join(missing)


def test_slug_matches_the_anchors_the_manual_uses():
    assert slug("Where people are: validated end to end (`crowdsafe eval-site`)") == \
        "where-people-are-validated-end-to-end-crowdsafe-eval-site"
    assert slug("API, dashboard and tokens") == "api-dashboard-and-tokens"
