"""Editing a site file from the Setup page without losing what its author wrote.

A site file is written by a person: comments say why a capacity is 250 or where a calibration
came from, and the key order is theirs. The page sends the whole site as JSON; this merges it into
the round-trip YAML tree (ruamel.yaml) so that every key, list item and comment the edit did not
touch stays where it was, values that did not change keep their spelling (``1195`` stays ``1195``,
a flow list stays a flow list), and list items with an ``id`` (cameras, zones, lines) are matched by
id, so a zone's comments follow the zone. Validation is the site loader's own (``parse_site``), so
the page shows the same field-named problems as ``crowdsafe site check``.

Saving keeps the previous file as a numbered backup (``site.yaml.~N~``, as GNU ``cp --backup=numbered``
names them) and replaces the file atomically; a save based on another version than the file on disk
is refused with what changed in between, never merged.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from crowdsafe.config.site import Site, SiteError, parse_site

#: The fields of a site that name files; a relative one is taken relative to the site file.
PATH_FIELDS = ("source", "tuning")
BACKUP = re.compile(r"\.~(\d+)~$")


def version_of(text: str) -> str:
    """The version a client must name when saving: the SHA-256 of the file's text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap a flow list into odd breaks; an edited one stays on one line
    y.indent(mapping=2, sequence=4, offset=2)  # `  - id: x` under a key, as the shipped sites are written
    return y


def read_tree(text: str) -> Any:
    """The round-trip tree of a site file's text (comments and order attached)."""
    try:
        return _yaml().load(text)
    except YAMLError as exc:
        raise SiteError([f"invalid YAML: {' '.join(str(exc).split())[:300]}"]) from None


def dump_tree(tree: Any) -> str:
    out = io.StringIO()
    _yaml().dump(tree, out)
    return out.getvalue()


def plain(node: Any) -> Any:
    """The tree as plain JSON data (dict, list, str, int, float, bool, None)."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return str(node)


def _node(value: Any) -> Any:
    """A new YAML node for JSON data: mappings and lists of mappings in block style, lists of
    numbers (points, sizes, polygons) in flow style, as a person writes them."""
    if isinstance(value, dict):
        m = CommentedMap()
        for k, v in value.items():
            m[k] = _node(v)
        return m
    if isinstance(value, list):
        seq = CommentedSeq(_node(v) for v in value)
        if all(not isinstance(v, dict) for v in value):
            seq.fa.set_flow_style()
        return seq
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return False
    return bool(a == b)


def _by_id(items: list[Any]) -> dict[str, Any] | None:
    if not items or not all(isinstance(i, dict) and isinstance(i.get("id"), str) for i in items):
        return None
    ids = [i["id"] for i in items]
    return dict(zip(ids, items, strict=True)) if len(set(ids)) == len(ids) else None


def merge(old: Any, new: Any) -> Any:
    """``new`` (plain JSON data) laid over ``old`` (a round-trip node): what did not change is
    ``old``'s own node, with its comments and style."""
    if _same(plain(old), new):
        return old
    if isinstance(old, CommentedMap) and isinstance(new, dict):
        for key in [k for k in old if k not in new]:
            del old[key]
        for key, value in new.items():
            old[key] = merge(old[key], value) if key in old else _node(value)
        return old
    if isinstance(old, CommentedSeq) and isinstance(new, list):
        before = _by_id(list(old))
        if before is not None and _by_id(new) is not None:
            items = [merge(before[i["id"]], i) if i["id"] in before else _node(i) for i in new]
        elif all(not isinstance(v, dict) for v in new):
            seq = _node(new)
            if not old.fa.flow_style():
                seq.fa.set_block_style()
            return seq
        else:
            items = [merge(old[k], v) if k < len(old) else _node(v) for k, v in enumerate(new)]
        old[:] = items
        return old
    return _node(new)


def _tail_slot(parent: Any, key: Any) -> tuple[Any, Any, int]:
    """Where ruamel keeps the comment that follows ``parent[key]``: after its last block descendant."""
    value = parent[key]
    if isinstance(value, CommentedMap) and len(value) and not value.fa.flow_style():
        return _tail_slot(value, list(value)[-1])
    if isinstance(value, CommentedSeq) and len(value) and not value.fa.flow_style():
        return _tail_slot(value, len(value) - 1)
    return parent, key, 2 if isinstance(parent, CommentedMap) else 0


def _tail_text(parent: Any, key: Any) -> str:
    holder, k, i = _tail_slot(parent, key)
    slot = holder.ca.items.get(k)
    token = slot[i] if slot and len(slot) > i else None
    return token.value if token is not None else ""


def _following_blocks(tree: CommentedMap) -> dict[Any, str]:
    """The full-line comment block above each top-level key. ruamel stores it with the end of the
    previous key's value (after that value's own end-of-line comment), so it would go when that
    value's last item is deleted; keyed here by the key it stands above."""
    keys = list(tree)
    out = {}
    for before, key in pairwise(keys):
        text = _tail_text(tree, before)
        block = text.split("\n", 1)[1] if text and not text.startswith("\n") and "\n" in text else text
        if block.strip():
            out[key] = block
    return out


def _restore_blocks(tree: CommentedMap, blocks: dict[Any, str]) -> None:
    keys = list(tree)
    for before, key in pairwise(keys):
        block = blocks.get(key)
        if not block or block in _tail_text(tree, before):
            continue
        lines = [ln.strip() for ln in block.strip("\n").splitlines()]
        if not all(ln.startswith("#") for ln in lines):
            continue
        text = "\n".join(ln[1:].removeprefix(" ") for ln in lines)
        tree.yaml_set_comment_before_after_key(key, before=text, indent=0)


def merged_text(text: str, site: dict[str, Any]) -> str:
    """The file's text with ``site`` written into it (comments and order of the rest kept)."""
    tree = read_tree(text)
    if not isinstance(tree, CommentedMap):
        return dump_tree(_node(site))
    roundtrip = dump_tree(tree)
    blocks = _following_blocks(tree)
    merged = merge(tree, site)
    _restore_blocks(merged, blocks)
    out = dump_tree(merged)
    kept = _keep_untouched_lines(text, roundtrip, out)
    try:
        if plain(read_tree(kept)) == plain(read_tree(out)):
            return kept
    except SiteError:
        pass
    return out


def _keep_untouched_lines(original: str, roundtrip: str, merged: str) -> str:
    """``merged`` with every stretch the edit did not touch taken from ``original`` as typed.

    ruamel cannot keep the line breaks inside a flow list (``[[60, 560], ...`` over two lines comes
    back on one), so a plain dump would rewrap lists nobody edited. The dump of the unedited tree
    (``roundtrip``) lines up with both: where it equals ``merged`` the author's own lines are used.
    """
    o, r, m = original.splitlines(True), roundtrip.splitlines(True), merged.splitlines(True)
    segments = difflib.SequenceMatcher(None, o, r, autojunk=False).get_opcodes()  # O <-> R
    out: list[str] = []

    def from_original(a: int, b: int) -> None:
        """R lines [a, b) as the original had them (a whole rewrapped region, or R's own lines)."""
        for tag, i1, i2, j1, j2 in segments:
            if tag == "equal":
                lo, hi = max(a, j1), min(b, j2)
                if lo < hi:
                    out.extend(o[i1 + lo - j1:i1 + hi - j1])
            elif tag == "delete":
                if a < j1 <= b or (a == j1 == 0):
                    out.extend(o[i1:i2])
            elif j1 < b and a < j2:
                out.extend(o[i1:i2] if a <= j1 and j2 <= b else r[max(a, j1):min(b, j2)])

    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, r, m, autojunk=False).get_opcodes():
        if tag == "equal":
            from_original(i1, i2)
        else:
            out.extend(m[j1:j2])
    return "".join(out)


def changes(before: Any, after: Any, path: str = "", limit: int = 40) -> list[str]:
    """What differs between two versions of a site, as 'field.path: was X, now Y' lines."""
    out: list[str] = []

    def short(v: Any) -> str:
        s = repr(v) if not isinstance(v, str) else v
        return s if len(s) <= 60 else s[:57] + "..."

    def walk(a: Any, b: Any, at: str) -> None:
        if len(out) >= limit or _same(a, b):
            return
        if isinstance(a, dict) and isinstance(b, dict):
            keyed(a, b, lambda k: f"{at}.{k}" if at else str(k))
            return
        if isinstance(a, list) and isinstance(b, list):
            ia, ib = _by_id(a), _by_id(b)
            ia = {} if not a and ib is not None else ia  # all added or all removed: still by id
            ib = {} if not b and ia is not None else ib
            if ia is not None and ib is not None:
                keyed(ia, ib, lambda k: f"{at}[{k}]")
                return
        out.append(f"{at or '(top level)'}: was {short(a)}, now {short(b)}")

    def keyed(a: dict[Any, Any], b: dict[Any, Any], where_of: Callable[[Any], str]) -> None:
        for k in list(a) + [k for k in b if k not in a]:
            where = where_of(k)
            if k not in b:
                out.append(f"{where}: removed")
            elif k not in a:
                out.append(f"{where}: added")
            else:
                walk(a[k], b[k], where)

    walk(before, after, path)
    return out


#: Far above any real site (a name, a polygon of a few hundred corners), far below harm.
MAX_TEXT = 2000
MAX_ITEMS = 5000


def oversized(site: Any) -> list[str]:
    """Texts and lists bigger than a site file ever holds, named by field ('zones[0].name: ...')."""
    out: list[str] = []

    def walk(node: Any, at: str) -> None:
        if len(out) >= 20:
            return
        if isinstance(node, str) and len(node) > MAX_TEXT:
            out.append(f"{at}: text of {len(node)} characters; at most {MAX_TEXT}")
        elif isinstance(node, dict):
            for k, v in node.items():
                if len(str(k)) > 200:
                    out.append(f"{at or '(top level)'}: a key of {len(str(k))} characters")
                    continue
                walk(v, f"{at}.{k}" if at else str(k))
        elif isinstance(node, list):
            if len(node) > MAX_ITEMS:
                out.append(f"{at}: {len(node)} items; at most {MAX_ITEMS}")
                return
            for i, v in enumerate(node):
                walk(v, f"{at}[{i}]")

    walk(site, "")
    return out


def unsafe_paths(new: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """File names the page may not introduce: a camera's source or tuning that is new or changed
    and leaves the site's folder (absolute, or climbing with ``..``). Paths already in the file are
    the author's and stay as they are; URLs (``rtsp://``) are not files."""
    problems = []
    known = {c.get("id"): c for c in current.get("cameras") or [] if isinstance(c, dict)}
    for index, cam in enumerate(new.get("cameras") or []):
        if not isinstance(cam, dict):
            continue
        for name in PATH_FIELDS:
            value = cam.get(name)
            if not isinstance(value, str) or "://" in value:
                continue
            if (known.get(cam.get("id")) or {}).get(name) == value:
                continue
            p = Path(value)
            if p.is_absolute() or ".." in p.parts or "\\" in value or "\0" in value:
                problems.append(f"cameras[{index}].{name}: {value[:80]!r} leaves the site's folder; a file "
                                "set from the Setup page must be inside it (edit the file by hand for that)")
    return problems


def validate(site: dict[str, Any], source: str, base_dir: Path) -> Site:
    """The site as ``crowdsafe site check`` loads it; SiteError with its field-named problems."""
    try:
        return parse_site(site, source, base_dir)
    except RecursionError:
        raise SiteError(["(top level): lists or mappings nested too deeply to read"], source) from None


def backups(path: Path) -> Iterator[tuple[int, Path]]:
    for p in path.parent.glob(path.name + ".~*~"):
        if m := BACKUP.search(p.name):
            yield int(m.group(1)), p


def write_with_backup(path: Path, text: str) -> Path:
    """Copy the current file to the next numbered backup, then replace it atomically with ``text``."""
    number = max((n for n, _ in backups(path)), default=0) + 1
    backup = path.with_name(f"{path.name}.~{number}~")
    shutil.copy2(path, backup)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        shutil.copymode(path, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return backup
