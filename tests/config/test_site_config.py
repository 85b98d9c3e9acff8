"""The site file: what loads, and that every mistake is reported at its exact field path."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from crowdsafe.config.site import SiteError, load_site, parse_duration, parse_site, site_json_schema
from crowdsafe.geometry.site import build_site_geometry

DEMO_SITE = Path(__file__).resolve().parents[2] / "src" / "crowdsafe" / "data" / "demo_site.yaml"


@pytest.fixture()
def demo() -> dict:
    return yaml.safe_load(DEMO_SITE.read_text())


def problems_of(data: dict) -> list[str]:
    with pytest.raises(SiteError) as err:
        parse_site(data)
    return err.value.problems


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


def test_demo_site_loads_with_its_parts():
    site = load_site(DEMO_SITE)
    assert [c.id for c in site.cameras] == ["view001"]
    cam = site.cameras[0]
    assert cam.model == "auto" and cam.sampling.seconds == 1.0 and cam.calibration.image_size == (768, 576)
    assert len(cam.calibration.image_points) == len(cam.calibration.ground_points) >= 6
    assert {z.id: z.type for z in site.zones} == {
        "walkway": "walkway", "lawn": "standing", "forecourt": "queue"}
    assert site.zones[0].exits[0].width_m == 6.0
    assert Path(site.resolve_source(cam)) == DEMO_SITE.parent / "vtest.avi"
    assert Path(site.resolve_source(cam)).is_file()
    gate = site.lines[0]
    assert gate.length_m == pytest.approx(13.5) and gate.positive_normal() == pytest.approx((0.0, 1.0))


def test_line_positive_direction_conventions(demo):
    demo["lines"] = [{"id": "l", "a": [0, 0], "b": [2, 0], "positive": "right"},
                     {"id": "m", "a": [0, 0], "b": [2, 0], "positive": [0.3, -5]},
                     {"id": "n", "a": [0, 0], "b": [0, 3]}]
    site = parse_site(demo)
    assert site.lines[0].positive_normal() == pytest.approx((0.0, -1.0))
    assert site.lines[1].positive_normal() == pytest.approx((0.0, -1.0)), "snapped to the normal's side"
    assert site.lines[2].positive_normal() == pytest.approx((-1.0, 0.0)), "left of a→b going +y is -x"


def test_bad_yaml_names_line_and_column(tmp_path):
    path = write(tmp_path, "name: x\ncameras:\n  - id: a\n   source: [unclosed\n")
    with pytest.raises(SiteError, match=r"site.yaml: invalid YAML at line \d+, column \d+"):
        load_site(path)


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(SiteError, match=r"nope\.yaml: file not found"):
        load_site(tmp_path / "nope.yaml")
    with pytest.raises(SiteError, match=r"\(top level\): expected a mapping"):
        load_site(write(tmp_path, "- just\n- a list\n"))


def test_unknown_camera_model_names_the_field(demo):
    demo["cameras"][0]["model"] = "huge"
    assert problems_of(demo) == ["cameras[0].model: input should be 'dense', 'sparse' or 'auto'"]


def test_typo_in_a_key_is_an_error_not_ignored(demo):
    demo["zones"][1]["capacitiy"] = 10
    assert problems_of(demo) == ["zones[1].capacitiy: unknown field (typo?)"]


def test_self_intersecting_zone_polygon(demo):
    demo["zones"][2]["polygon"] = [[0, 0], [4, 4], [4, 0], [0, 4]]  # a bow tie
    (problem,) = problems_of(demo)
    assert problem.startswith("zones[2].polygon: polygon is self-intersecting")


def test_zero_area_polygon(demo):
    demo["zones"][0]["polygon"] = [[0, 0], [1, 1], [2, 2]]
    assert any(p.startswith("zones[0].polygon:") for p in problems_of(demo))


def test_duplicate_ids_name_both_places(demo):
    demo["zones"].append(copy.deepcopy(demo["zones"][0]))
    demo["cameras"].append(copy.deepcopy(demo["cameras"][0]))
    problems = problems_of(demo)
    assert "cameras[1].id: duplicate id 'view001' (also cameras[0])" in problems
    assert "zones[3].id: duplicate id 'walkway' (also zones[0])" in problems


def test_calibration_counts_and_minimum(demo):
    cal = demo["cameras"][0]["calibration"]
    cal["ground_points"] = cal["ground_points"][:-1]
    assert problems_of(demo) == [
        "cameras[0].calibration.ground_points: 8 ground points for 9 image points; they are pairs and must "
        "match one to one"]
    cal["image_points"], cal["ground_points"] = cal["image_points"][:3], cal["ground_points"][:3]
    problems = problems_of(demo)
    assert "cameras[0].calibration.image_points: need at least 4 non-collinear points, got 3" in problems


def test_image_points_outside_the_image(demo):
    demo["cameras"][0]["calibration"]["image_points"][4] = [800, 100]
    assert problems_of(demo) == [
        "cameras[0].calibration.image_points: points [4] lie outside the 768x576 image"]


def test_geometric_calibration_errors_carry_the_camera_path(demo):
    second = copy.deepcopy(demo["cameras"][0])
    second["id"] = "mirror"
    second["calibration"]["ground_points"] = [[x, -y] for x, y in second["calibration"]["ground_points"]]
    third = copy.deepcopy(demo["cameras"][0])
    third["id"] = "line"
    third["calibration"]["image_points"] = [[10 * k, 10 * k] for k in range(1, 10)]
    demo["cameras"] += [second, third]
    site = parse_site(demo)  # well-formed: these are geometric problems
    with pytest.raises(SiteError) as err:
        build_site_geometry(site)
    assert err.value.problems[0].startswith("cameras[1].calibration.ground_points: the fit is mirrored")
    assert err.value.problems[1] == ("cameras[2].calibration.image_points: need at least 4 non-collinear "
                                     "points; all 9 points lie on one line")


def test_degenerate_line_and_parallel_direction(demo):
    demo["lines"] = [{"id": "a", "a": [1, 1], "b": [1, 1.01]},
                     {"id": "b", "a": [0, 0], "b": [2, 0], "positive": [4, 0]}]
    problems = problems_of(demo)
    assert problems[0].startswith("lines[0]: a and b are 0.010 m apart")
    assert problems[1].startswith("lines[1].positive: direction [4.0, 0.0] is parallel to the line")


def test_wrong_point_shape_and_ranges(demo):
    demo["zones"][0]["polygon"][0] = [1, 2, 3]
    demo["zones"][0]["capacity"] = -5
    demo["zones"][0]["exits"][0]["kind"] = "escalator"
    problems = problems_of(demo)
    assert any(p.startswith("zones[0].polygon[0]:") for p in problems)
    assert "zones[0].capacity: input should be greater than or equal to 0" in problems
    assert any(p.startswith("zones[0].exits[0].kind: input should be 'level' or 'stairs'") for p in problems)


def test_sampling_and_durations(demo):
    assert parse_duration("500ms") == 0.5 and parse_duration("2min") == 120 and parse_duration("1h") == 3600
    demo["cameras"][0]["sampling"] = {"every": "fast"}
    (problem,) = problems_of(demo)
    assert problem.startswith("cameras[0].sampling.every: value error, not a duration: 'fast'")


def test_safety_profiles_validated(demo):
    demo["safety"] = {"profiles": {"mine": [{"label": "ok", "below": 2}, {"label": "bad", "below": 1},
                                            {"label": "worse"}]},
                      "risk_profile": "mine", "los_by_zone_type": {"queue": "missing"}}
    demo["zones"][0]["los_profile"] = "also_missing"
    problems = problems_of(demo)
    assert "safety.profiles.mine: band limits must increase, got [2.0, 1.0]" in problems
    assert any(p.startswith("safety.los_by_zone_type.queue: unknown profile 'missing'") for p in problems)
    assert any(p.startswith("zones[0].los_profile: unknown profile 'also_missing'") for p in problems)


def test_staffing_and_schedule_are_strict(demo):
    demo["staffing"] = {"people_per_steward": 250, "planned_stewards": {"walkway": 2}}
    demo["schedule"] = [{"name": "match", "start": "2026-05-01T18:00:00Z", "end": "2026-05-01T20:00:00Z",
                         "expected_attendance": 30000}]
    site = parse_site(demo)
    assert site.staffing is not None and site.staffing.people_per_steward == 250
    assert site.staffing.planned_stewards == {"walkway": 2}
    assert site.schedule[0].expected_attendance == 30000
    demo["schedule"][0]["end"] = "2026-05-01T17:00:00Z"
    assert problems_of(demo) == ["schedule[0].end: must be after start"]
    # issue 16: typos in these sections were accepted as extra fields and silently did nothing
    demo["schedule"][0] = {"name": "match", "start": "2026-05-01T18:00:00Z", "expected_attendence": 30000}
    demo["staffing"] = {"people_per_stewart": 250}
    assert problems_of(demo) == ["staffing.people_per_stewart: unknown field (typo?)",
                                 "schedule[0].expected_attendence: unknown field (typo?)"]


def test_los_letters_time_zone_and_times_name_their_field(demo, tmp_path):
    """Issue 26: ``extra_by_los: {G: 4}`` was accepted, and ``T25:00`` said "hour must be in 0..23"."""
    demo["staffing"]["extra_by_los"] = {"D": 1, "G": 4}
    demo["timezone"] = "Europe/Lundon"
    assert problems_of(demo) == [
        "staffing.extra_by_los.G: not a Level of Service band; known: A, B, C, D, E, F",
        "timezone: unknown time zone 'Europe/Lundon'; give an IANA name such as Europe/London or UTC"]
    demo["staffing"]["extra_by_los"] = {"D": 1}
    demo["timezone"] = "Europe/London"
    assert parse_site(demo).timezone == "Europe/London"
    text = DEMO_SITE.read_text().replace("vtest.avi", str(DEMO_SITE.parent / "vtest.avi")).replace(
        "tuning: view001", f"tuning: {DEMO_SITE.parent}/view001")
    with pytest.raises(SiteError) as err:
        load_site(write(tmp_path, text + "\nschedule:\n  - {name: gig, start: 2026-06-01T25:00:00}\n"))
    assert err.value.problems[0].startswith("schedule[0].start: input should be a valid datetime")
    ok = load_site(write(tmp_path, text + "\nschedule:\n  - {name: gig, start: 2026-06-01T19:00:00+01:00, "
                                         "end: 2026-06-01 21:00:00}\n"))  # YAML's own forms still read
    assert ok.schedule[0].epoch(ok.schedule[0].end) - ok.schedule[0].epoch(ok.schedule[0].start) == 3 * 3600


def test_binary_file_and_folder_get_one_clear_line(tmp_path):
    (tmp_path / "binary.yaml").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(128, 256)))
    with pytest.raises(SiteError) as err:
        load_site(tmp_path / "binary.yaml")
    assert len(str(err.value).splitlines()) == 1 and "not a text file" in str(err.value)
    assert "codec" not in str(err.value)
    (tmp_path / "nul.yaml").write_bytes(b"name: x\x00\n")  # valid UTF-8: the YAML reader says where
    with pytest.raises(SiteError, match=r"invalid YAML at line 1, column 8: character #x0000"):
        load_site(tmp_path / "nul.yaml")
    with pytest.raises(SiteError) as err:
        load_site(tmp_path)
    assert "is a folder, not a site file" in str(err.value) and "Errno" not in str(err.value)


def test_site_check_warns_on_absurd_areas_and_unseen_lines(tmp_path, demo):
    from typer.testing import CliRunner

    from crowdsafe.cli.main import app

    demo["cameras"][0]["source"] = str(DEMO_SITE.parent / "vtest.avi")
    demo["cameras"][0]["tuning"] = str(DEMO_SITE.parent / "view001_tuning.json")
    demo["zones"][0]["polygon"][0] = [-6.5e9, 8.0e9]  # a coordinate typed in the wrong unit
    demo["lines"][0]["a"], demo["lines"][0]["b"] = [500.0, 500.0], [510.0, 500.0]  # far off every camera
    path = write(tmp_path, yaml.safe_dump(demo))
    result = CliRunner().invoke(app, ["site", "check", str(path)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    walkway = next(line for line in out.splitlines() if line.startswith("zone walkway"))
    assert "larger than any venue" in walkway
    gate = next(line for line in out.splitlines() if line.startswith("line east_gate"))
    assert "no camera sees it" in gate
    assert "with 2 warnings" in out.splitlines()[0]
    plain = CliRunner().invoke(app, ["site", "check", str(DEMO_SITE)])
    assert plain.exit_code == 0 and "WARNING" not in plain.stdout
    assert plain.stdout.splitlines()[0].endswith("OK")


def test_json_schema_describes_the_file():
    schema = site_json_schema()
    assert schema["title"] == "crowdsafe site file"
    expected = {"name", "cameras", "zones", "lines", "safety", "staffing", "schedule"}
    assert expected <= set(schema["properties"])
    camera = schema["$defs"]["Camera"]
    assert camera["properties"]["model"]["enum"] == ["dense", "sparse", "auto"]
    assert camera["additionalProperties"] is False
    assert len(schema["$defs"]["Zone"]["properties"]["polygon"]["items"]["prefixItems"]) == 2  # [x, y]
