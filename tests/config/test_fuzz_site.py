"""Property-based fuzzing of the site file: whatever the file holds, the loader says where it is wrong.

The contract (config/site.py, geometry/site.py, `crowdsafe site check`): a site file either loads,
or loading raises ``SiteError`` whose every problem is one line that starts with the field path
(``cameras[0].calibration.image_points: ...``) or says where in the YAML text it broke; never
any other exception, never a hang. Cases come from three generators:

- mutations of a rich valid site (the demo site plus safety profiles, staffing and a schedule):
  1-4 edits at random places (replace with any YAML value, delete, add a key, scale a number,
  duplicate, truncate or swap list items) — these reach deep fields that random text never does;
- arbitrary YAML documents (nested mappings, lists and scalars) at the top level;
- arbitrary text and bytes, written to the file as they are.

A file that loads is then fitted (``build_site_geometry``, what the runner does at start-up),
which must also succeed or raise ``SiteError`` with field paths. Each case has a time limit.
"""

from __future__ import annotations

import copy
import math
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel
from typer.testing import CliRunner

from crowdsafe.cli.main import app
from crowdsafe.config.site import Site, SiteError, load_site
from crowdsafe.geometry.site import build_site_geometry
from tests.support.fuzzing import fuzz_settings, tally

DEMO = Path(str(resources.files("crowdsafe") / "data" / "demo_site.yaml"))
CASE_LIMIT_S = 20.0


def rich_site() -> dict[str, Any]:
    """The demo site with every optional section filled, so mutations reach all of the schema."""
    data = yaml.safe_load(DEMO.read_text())
    data["cameras"][0]["source"] = "vtest.avi"
    data["safety"] = {
        "profiles": {"tight": [{"label": "ok", "below": 1.5}, {"label": "busy", "below": 3.0},
                               {"label": "full"}]},
        "los_by_zone_type": {"walkway": "tight"},
        "risk_profile": "tight",
    }
    data["zones"][2]["los_profile"] = "tight"
    data["staffing"] = {"people_per_steward": 100, "min_stewards": 1,
                        "people_per_steward_by_type": {"queue": 50}, "extra_by_los": {"E": 1, "F": 2},
                        "people_per_medic": 1000, "min_medics": 1, "forecast_bound": "hi80"}
    data["schedule"] = [{"name": "concert", "start": "2026-06-01T19:00:00", "end": "2026-06-01T22:00:00",
                         "doors_open": "2026-06-01T17:30:00", "expected_attendance": 5000,
                         "breaks": [["2026-06-01T20:00:00", "2026-06-01T20:20:00"]], "zones": ["walkway"]}]
    return data


def _model_keys(model: type[BaseModel], seen: set[type] | None = None) -> set[str]:
    """Every field name of the schema: the keys a mutation may add where they do not belong."""
    seen = seen if seen is not None else set()
    if model in seen:
        return set()
    seen.add(model)
    keys = set(model.model_fields)
    for info in model.model_fields.values():
        for sub in _models_in(info.annotation):
            keys |= _model_keys(sub, seen)
    return keys


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        yield from _models_in(arg)


BASE = rich_site()
KEYS = sorted(_model_keys(Site))
TOP_LEVEL = set(Site.model_fields) | {"(top level)"}
WHERE_IN_TEXT = ("invalid YAML at ", "cannot read: ", "file not found", "not a text file (byte ")

TRICKY_TEXT = ["", " ", "1s", "0s", "-1s", "500ms", "1e400", "nan", "inf", "-0", "walkway", "queue",
               "standing", "fruin_walkway", "left", "right", "auto", "dense", "level", "stairs", "hi95",
               "../../etc/passwd", "/dev/zero", "rtsp://user:pw@10.0.0.1/s", "x" * 300, "\x00", "\u202e",
               "2026-06-01T19:00:00", "2026-13-45T99:99:99", "view001", "tight", "A", "E", "null", "~",
               "{", "[", "&a", "*a", "!!python/object:os.system", "${HOME}", "'", '"', "\\"]
numbers = st.one_of(
    st.integers(min_value=-(2**66), max_value=2**66),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 4, 0.5, 1e-12, 1e12, 1e300, 768, 576, 16384, 16385, 2**31, 2**63]),
)
leaves = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=40), st.sampled_from(TRICKY_TEXT),
                   st.sampled_from(KEYS))
yaml_values = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=6),
                            st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=12)), inner,
                                            max_size=6)),
    max_leaves=30)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


def _get(root: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        root = root[part]
    return root


@st.composite
def mutated_sites(draw: st.DrawFn) -> Any:
    data = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(data))
        path = draw(st.sampled_from(paths))
        node = _get(data, path)
        parent = _get(data, path[:-1]) if path else None
        ops = ["replace", "delete"] if path else ["replace"]
        if isinstance(node, dict):
            ops.append("add_key")
        if isinstance(node, list):
            ops += ["duplicate", "truncate", "swap"]
        if isinstance(node, (int, float)) and not isinstance(node, bool):
            ops += ["scale", "scale"]
        op = draw(st.sampled_from(ops))
        if op == "replace":
            value = draw(yaml_values)
            if not path:
                return value
            parent[path[-1]] = value
        elif op == "delete":
            del parent[path[-1]]
        elif op == "add_key":
            node[draw(st.one_of(st.sampled_from(KEYS), st.text(max_size=12)))] = draw(yaml_values)
        elif op == "duplicate" and node:
            node.append(copy.deepcopy(node[draw(st.integers(0, len(node) - 1))]))
        elif op == "truncate":
            del node[draw(st.integers(0, len(node))):]
        elif op == "swap" and len(node) >= 2:
            i, j = draw(st.integers(0, len(node) - 1)), draw(st.integers(0, len(node) - 1))
            node[i], node[j] = node[j], node[i]
        elif op == "scale":
            factor = draw(st.sampled_from([-1.0, 0.0, 1e-9, 0.5, 1.0001, 2.0, 1e9, math.inf, math.nan]))
            parent[path[-1]] = node * factor
    return data


class Hang(Exception):
    """A case ran past its time limit: a hang as far as an operator is concerned."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expired(_signum: int, _frame: Any) -> None:
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def names_its_place(problem: str) -> bool:
    """'cameras[0].calibration.image_size: ...', '(top level): ...' or 'invalid YAML at line 3, ...'."""
    if "\n" in problem or not problem.strip():
        return False
    if problem.startswith(WHERE_IN_TEXT):
        return True
    if problem.endswith(": unknown field (typo?)"):  # the path is the unknown key itself
        return True
    head = re.split(r"[.\[:]", problem, maxsplit=1)[0]
    return head in TOP_LEVEL and ": " in problem


def check_site_file(path: Path) -> Site | None:
    """The property: load (and fit) the file; only a SiteError naming each problem's place may escape."""
    with time_limit(CASE_LIMIT_S):
        try:
            site = load_site(path)
            build_site_geometry(site)
        except SiteError as exc:
            assert exc.problems, "SiteError without problems"
            unplaced = [p for p in exc.problems if not names_its_place(p)]
            assert not unplaced, f"problems without a field path: {unplaced}"
            return None
    return site


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


# -- the generators' own sanity: they start from a valid site and the checker can fail -------------

def test_base_site_is_valid_and_the_checker_rejects_pathless_problems(tmp_path: Path):
    assert check_site_file(write_yaml(tmp_path / "site.yaml", BASE)) is not None
    assert names_its_place("cameras[0].calibration.image_size: input should be greater than 0")
    assert names_its_place("(top level): expected a mapping")
    assert names_its_place("invalid YAML at line 2, column 3: mapping values are not allowed here")
    assert not names_its_place("something went wrong")
    assert not names_its_place("cameras[0]\n  traceback")


# -- properties ------------------------------------------------------------------------------------

def test_mutated_site_files_load_or_name_the_field(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("mutated")
    with tally("site: mutated site files") as count:

        @fuzz_settings(ci_default=120)
        @given(mutated_sites())
        def prop(data: Any) -> None:
            count.cases += 1
            check_site_file(write_yaml(folder / "site.yaml", data))

        prop()


def test_arbitrary_yaml_documents_load_or_name_the_field(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("documents")
    with tally("site: arbitrary YAML documents") as count:

        @fuzz_settings()
        @given(yaml_values)
        def prop(data: Any) -> None:
            count.cases += 1
            check_site_file(write_yaml(folder / "site.yaml", data))

        prop()


def test_arbitrary_text_and_bytes_load_or_say_where(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("text")
    seeds = [DEMO.read_bytes()]
    with tally("site: arbitrary text and bytes") as count:

        @fuzz_settings()
        @given(st.one_of(st.binary(max_size=2000), st.text(max_size=2000).map(lambda t: t.encode()),
                         st.builds(lambda cut, junk: seeds[0][:cut] + junk + seeds[0][cut:],
                                   st.integers(0, len(seeds[0])), st.binary(max_size=40))))
        def prop(raw: bytes) -> None:
            count.cases += 1
            path = folder / "site.yaml"
            path.write_bytes(raw)
            check_site_file(path)

        prop()


def test_site_check_command_exits_2_with_one_line_per_problem(tmp_path_factory: pytest.TempPathFactory):
    """What a person sees: `crowdsafe site check` prints errors (exit 2) or the summary (exit 0), no trace."""
    folder = tmp_path_factory.mktemp("cli")
    runner = CliRunner()
    with tally("site: `crowdsafe site check` on mutated files") as count:

        @fuzz_settings(ci_default=25)
        @given(mutated_sites())
        def prop(data: Any) -> None:
            count.cases += 1
            path = write_yaml(folder / "site.yaml", data)
            with time_limit(CASE_LIMIT_S):
                result = runner.invoke(app, ["site", "check", str(path)])
            assert result.exit_code in (0, 2), (result.exit_code, result.output, result.exception)
            assert "Traceback" not in result.output
            if result.exit_code == 2:
                assert result.output.strip().startswith("error:") or "error:" in result.output

        prop()


# -- hostile YAML that generators rarely hit -------------------------------------------------------

@pytest.mark.parametrize("text", [
    "zones: " + "[" * 5000 + "]" * 5000,  # deep nesting: the YAML composer recurses
    "name: x\ncameras:\n" + "  " * 3000 + "- a\n",
    # a billion laughs: aliases expand to 10**9 leaves if anything walks them as a tree
    "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
    "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
    "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]\nname: x\ncameras: *i\nstaffing: {x: *i}\n",
    "!!python/object/apply:os.system ['touch /tmp/crowdsafe-pwned']",
    "name: !!binary aGVsbG8=\ncameras: []\n",
    "\ufeffname: x\n",
    "name: x\n\x00cameras: []\n",
])
def test_hostile_yaml_is_a_site_error(tmp_path: Path, text: str):
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    assert check_site_file(path) is None
    assert not Path("/tmp/crowdsafe-pwned").exists()
