"""Saving an edited site into the user's YAML: only what was edited changes in the text."""

from __future__ import annotations

import difflib

import yaml

from crowdsafe.config.site_edit import changes, merged_text, plain, read_tree
from tests.support.api_support import DEMO_SITE

TEXT = DEMO_SITE.read_text()


def edited_lines(before: str, after: str) -> list[str]:
    return [ln for ln in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
            if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]


def test_an_unedited_site_is_written_back_byte_for_byte():
    assert merged_text(TEXT, plain(read_tree(TEXT))) == TEXT


def test_one_value_edited_changes_one_line_and_keeps_comments_and_order():
    site = plain(read_tree(TEXT))
    site["zones"][1]["capacity"] = 450
    out = merged_text(TEXT, site)
    assert edited_lines(TEXT, out) == ["-    capacity: 400", "+    capacity: 450"]
    assert yaml.safe_load(out)["zones"][1]["capacity"] == 450


def test_deleting_the_last_items_keeps_the_comment_above_the_next_key():
    site = plain(read_tree(TEXT))
    site["lines"], site["zones"] = [], []
    out = merged_text(TEXT, site)
    assert "# Staffing policy (the site's own choice" in out
    assert "# \"in\" = walking from the right edge" not in out  # the deleted line's own comment goes
    data = yaml.safe_load(out)
    assert data["lines"] == [] and data["zones"] == [] and data["staffing"]["min_stewards"] == 1


def test_zones_are_matched_by_id_so_their_comments_follow_them():
    site = plain(read_tree(TEXT))
    site["zones"] = [site["zones"][1], site["zones"][0], site["zones"][2]]  # lawn first now
    out = merged_text(TEXT, site)
    lawn = out.index("id: lawn")
    assert lawn < out.index("id: walkway")
    assert lawn < out.index("# Reaches past the bottom of the image") < out.index("id: walkway")
    assert [z["id"] for z in yaml.safe_load(out)["zones"]] == ["lawn", "walkway", "forecourt"]


def test_changes_name_the_fields_by_id():
    a = plain(read_tree(TEXT))
    b = plain(read_tree(TEXT))
    b["zones"][0]["capacity"] = 300
    b["lines"] = []
    assert changes(a, b) == ["zones[walkway].capacity: was 250, now 300", "lines[east_gate]: removed"]


def test_changes_name_added_and_removed_keys_by_path():
    a = plain(read_tree(TEXT))
    b = plain(read_tree(TEXT))
    b["zones"][0]["note"] = "stage side"
    del b["zones"][1]["capacity"]
    assert changes(a, b) == ["zones[walkway].note: added", "zones[lawn].capacity: removed"]
