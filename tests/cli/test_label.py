"""``crowdsafe label`` in a real browser (Debian chromium via Playwright) on the sample video.

The command runs as a subprocess, as a user runs it; the test reads the URL it prints, checks
that nothing without the one-time token gets in, then accepts the counter's proposals on frames
0:200:10 and corrects them toward the PETS head annotation (``vtest_heads.json``) with the mouse
only (drag, right-click, click) and finishes; the command, started with ``--tune``, then runs
``crowdsafe tune`` on the labels it wrote. Frames are never written: the working folder holds the
site, the labels and the tuning only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from crowdsafe.counting.tuning import load_tuning
from crowdsafe.evaluation.site import load_frame_points

REPO = Path(__file__).resolve().parents[2]
DEMO_SITE = REPO / "src" / "crowdsafe" / "data" / "demo_site.yaml"
SHARED_DATA = Path(os.environ.get("CROWDSAFE_SHARED_DATA", REPO.parent / "shared" / "data"))
HEADS = SHARED_DATA / "video" / "vtest_heads.json"
CHROMIUM = os.environ.get("CROWDSAFE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
FRAMES = "0:200:10"
#: A proposal this close to an annotated head is that head (about a head's width at the back of
#: the scene); farther ones are removed and the head is clicked instead.
MATCH_PX = 25.0

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright not installed (pip install -e '.[dev]')")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
if not HEADS.is_file():
    pytest.skip(f"PETS annotated head points not found at {HEADS} (../shared absent)",
                allow_module_level=True)


def match(proposed: np.ndarray, truth: np.ndarray) -> list[tuple[int, int]]:
    """Closest pairs first, each point used once, none farther than ``MATCH_PX``."""
    if not len(proposed) or not len(truth):
        return []
    d = np.linalg.norm(proposed[:, None, :] - truth[None, :, :], axis=2)
    pairs, used_p, used_t = [], set(), set()
    for flat in np.argsort(d, axis=None):
        i, j = np.unravel_index(flat, d.shape)
        if d[i, j] > MATCH_PX:
            break
        if i not in used_p and j not in used_t:
            pairs.append((int(i), int(j)))
            used_p.add(i)
            used_t.add(j)
    return pairs


@pytest.fixture
def labelling(tmp_path: Path):
    work = tmp_path / "work"
    work.mkdir()
    site = work / "site.yaml"
    text = DEMO_SITE.read_text().replace("source: vtest.avi", f"source: {DEMO_SITE.parent}/vtest.avi")
    site.write_text(text.replace("tuning: view001_tuning.json",
                                 f"tuning: {DEMO_SITE.parent}/view001_tuning.json"))
    out = work / "labels.json"
    proc = subprocess.Popen([sys.executable, "-m", "crowdsafe.cli.main", "label", str(site),
                             "--camera", "view001", "--frames", FRAMES, "--out", str(out),
                             "--precision", "int8", "--tune", str(work / "t.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=work)
    assert proc.stdout is not None
    url = None
    deadline = time.monotonic() + 60
    lines = []
    while url is None and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if m := re.search(r"(http://127\.0\.0\.1:\d+/\?token=\S+)", line):
            url = m.group(1)
    if url is None:
        proc.kill()
        pytest.fail("crowdsafe label printed no URL:\n" + "".join(lines) + proc.stdout.read())
    yield {"url": url, "proc": proc, "out": out, "site": site, "work": work}
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def test_label_refuses_requests_without_the_one_time_token(labelling):
    base = labelling["url"].split("/?")[0]
    token = labelling["url"].split("token=")[1]
    for path in ["/", "/api/state", "/api/frame/0.jpg", "/?token=wrong",
                 "/api/frame/0.jpg?token=" + token[:-1]]:
        assert httpx.get(base + path, timeout=10).status_code == 403, path
    assert httpx.post(base + "/api/labels", json={"frames": {"0": []}}, timeout=10).status_code == 403
    assert httpx.post(base + "/api/finish", timeout=10).status_code == 403
    # the right token from another Host (DNS rebinding) is refused too
    assert httpx.get(base + "/api/state", headers={"X-Label-Token": token, "Host": "evil.example"},
                     timeout=10).status_code == 403
    ok = httpx.get(base + "/api/state", headers={"X-Label-Token": token}, timeout=10)
    assert ok.status_code == 200 and ok.headers["cache-control"] == "no-store"
    deadline = time.monotonic() + 120
    while not httpx.get(base + "/api/state", headers={"X-Label-Token": token}, timeout=10).json()["frames"]:
        assert time.monotonic() < deadline, "no frame loaded"
        time.sleep(0.5)
    # hostile bodies: field-named 422, nothing written
    for body, field in [({"frames": {"../../etc/passwd": []}}, "frames."), ({"frames": []}, "frames"),
                        ({"frames": {"0": [[1e9, 2]]}}, "frames.0[0]"), ({"frames": {"0": "x"}}, "frames.0")]:
        r = httpx.post(base + "/api/labels", json=body, headers={"X-Label-Token": token}, timeout=10)
        assert r.status_code == 422 and field in r.json()["detail"], (body, r.text)
    deep = "[" * 100_000 + "]" * 100_000
    r = httpx.post(base + "/api/labels", content=deep, headers={"X-Label-Token": token}, timeout=10)
    assert r.status_code == 422 and "frames" in r.json()["detail"]
    big = httpx.post(base + "/api/labels", content=b"x" * 3_000_000, headers={"X-Label-Token": token},
                     timeout=10)
    assert big.status_code == 413
    assert not labelling["out"].exists()


def test_label_proposals_corrected_in_the_browser_make_labels_tune_accepts(labelling):
    truth_all = load_frame_points(HEADS)
    wanted = list(range(0, 200, 10))
    stats = {"frames": 0, "truth": 0, "accepted": 0, "moved": 0, "removed": 0, "added": 0}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1920, "height": 1080})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(labelling["url"])
        assert "token" not in page.url  # dropped from the address bar once read
        sync_api.expect(page.locator("body[data-loading=no]")).to_have_count(1, timeout=240_000)
        box = page.locator("#view").bounding_box()
        assert box is not None and round(box["width"]) == 768  # shown at its own size: 1 px = 1 px

        def at(xy) -> tuple[float, float]:
            return box["x"] + float(xy[0]), box["y"] + float(xy[1])

        def shown() -> np.ndarray:
            circles = page.locator("#heads circle.head")
            return np.array([[float(c.get_attribute("cx")), float(c.get_attribute("cy"))]
                             for c in circles.all()]).reshape(-1, 2)

        for n, frame in enumerate(wanted):
            sync_api.expect(page.locator("#view")).to_have_attribute("data-frame", str(frame))
            truth = truth_all[frame]
            proposed = shown()
            pairs = match(proposed, truth)
            stats["frames"] += 1
            stats["truth"] += len(truth)
            # remove the proposals no annotated head is near, highest index first (indices shift)
            keep = {i for i, _ in pairs}
            for i in sorted(set(range(len(proposed))) - keep, reverse=True):
                page.mouse.click(*at(proposed[i]), button="right")
                stats["removed"] += 1
            current = shown()
            pairs = match(current, truth)
            for i, j in pairs:
                if np.linalg.norm(current[i] - truth[j]) <= 1.0:
                    stats["accepted"] += 1
                    continue
                page.mouse.move(*at(current[i]))
                page.mouse.down()
                page.mouse.move(*at(truth[j]), steps=3)
                page.mouse.up()
                stats["moved"] += 1
            for j in sorted(set(range(len(truth))) - {j for _, j in pairs}):
                page.keyboard.down("Shift")
                page.mouse.click(*at(truth[j]))
                page.keyboard.up("Shift")
                stats["added"] += 1
            sync_api.expect(page.locator("#status")).to_have_attribute("data-count", str(len(truth)))
            if n == 3:
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "label.png"))
            if n < len(wanted) - 1:
                page.keyboard.press("ArrowRight")
        page.click("#finish")
        sync_api.expect(page.locator("body[data-finished=yes]")).to_have_count(1, timeout=20_000)
        browser.close()
    assert not errors, errors
    said, _ = labelling["proc"].communicate(timeout=900)  # then `crowdsafe tune` runs in it
    assert labelling["proc"].returncode == 0, said
    assert "labels written to" in said and "chosen:" in said, said
    print("label test:", json.dumps(stats))
    # the proposals did most of the work: the counter's maxima sit near most annotated heads
    assert stats["accepted"] + stats["moved"] >= 0.6 * stats["truth"], stats
    labels = load_frame_points(labelling["out"])
    assert sorted(labels) == wanted
    for frame in wanted:
        got, truth = labels[frame], truth_all[frame]
        assert len(got) == len(truth), frame
        assert len(match(got, truth)) == len(truth)
        d = np.linalg.norm(got[:, None] - truth[None], axis=2).min(axis=0)
        assert d.max() <= 1.5, (frame, d)
    # frames stayed in memory: the working folder holds the site, the labels and the tuning only
    assert sorted(p.name for p in labelling["work"].rglob("*")) == ["labels.json", "site.yaml", "t.json"]
    tuned = load_tuning(labelling["work"] / "t.json")
    assert tuned.frames and all(f in wanted for f in tuned.frames)
    shutil.rmtree(labelling["work"])
