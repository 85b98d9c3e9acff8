"""API tokens: random secrets shown once, stored only as SHA-256 hashes in a JSON file.

A token is 32 random bytes, so a plain SHA-256 is enough (no password stretching is needed for
secrets with 256 bits of entropy) and keeps verification at microseconds per request. The file
is re-read when it changes on disk, so ``crowdsafe token create/revoke`` take effect on a
running server without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")
PREFIX = "cs_"
MAX_TOKEN_CHARS = 256
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


class TokenError(ValueError):
    """A token command cannot be done (bad name, unknown role, unreadable file); says why."""


def role_rank(role: str) -> int:
    return ROLES.index(role) if role in ROLES else -1  # type: ignore[arg-type]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class TokenEntry:
    name: str
    role: Role
    sha256: str
    created_ts: float

    def public(self) -> dict[str, object]:
        """What may be shown: never the hash, which is as good as the token for an offline guess."""
        return {"name": self.name, "role": self.role, "created_ts": self.created_ts}


class TokenBook:
    """The tokens file of a state dir; safe to share between request threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._entries: list[TokenEntry] = []

    # -- reading ---------------------------------------------------------------------------
    def entries(self) -> list[TokenEntry]:
        with self._lock:
            self._refresh()
            return list(self._entries)

    def verify(self, token: str) -> TokenEntry | None:
        """The entry a presented token belongs to, or None; compares with every entry in constant time."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        digest = hash_token(token)
        found = None
        for entry in self.entries():
            if hmac.compare_digest(digest, entry.sha256):
                found = entry  # no early exit: time does not depend on where the match is
        return found

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._entries = None, []
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._entries = self._load()
            self._stamp = stamp

    def _load(self) -> list[TokenEntry]:
        try:
            data = json.loads(self.path.read_text())
            return [TokenEntry(name=str(t["name"]), role=t["role"], sha256=str(t["sha256"]),
                               created_ts=float(t.get("created_ts", 0.0)))
                    for t in data.get("tokens", []) if t.get("role") in ROLES]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise TokenError(f"{self.path}: unreadable tokens file: {exc}") from exc

    # -- changing --------------------------------------------------------------------------
    def create(self, role: str, name: str | None = None) -> tuple[TokenEntry, str]:
        """A new token for ``role``; returns the entry and the token, which is not kept anywhere."""
        if role not in ROLES:
            raise TokenError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        with self._lock:
            self._refresh()
            names = {e.name for e in self._entries}
            if name is None:
                n = 1
                while f"{role}-{n}" in names:
                    n += 1
                name = f"{role}-{n}"
            if not _NAME.match(name):
                raise TokenError(f"bad token name {name!r}: letters, digits, '_', '.', '-', at most 64")
            if name in names:
                raise TokenError(f"a token named {name!r} exists; revoke it first or pick another name")
            token = PREFIX + secrets.token_urlsafe(32)
            entry = TokenEntry(name=name, role=role, sha256=hash_token(token),  # type: ignore[arg-type]
                               created_ts=round(time.time(), 3))
            self._save([*self._entries, entry])
        return entry, token

    def revoke(self, name: str) -> bool:
        with self._lock:
            self._refresh()
            kept = [e for e in self._entries if e.name != name]
            if len(kept) == len(self._entries):
                return False
            self._save(kept)
            return True

    def _save(self, entries: list[TokenEntry]) -> None:
        """Atomic replace with owner-only permissions: hashes are not secrets, but no reason to share."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"version": 1, "tokens": [asdict(e) for e in entries]}, fh, indent=2)
        os.replace(partial, self.path)
        self._entries = entries
        st = self.path.stat()
        self._stamp = (st.st_mtime_ns, st.st_size)
