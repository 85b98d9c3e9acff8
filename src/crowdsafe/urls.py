"""URLs as they may be shown: without the credentials cameras, databases and webhooks carry.

A camera URL can hold a password in its user part (``rtsp://admin:pw@host/``) or its query
(``rtsp://host/stream?password=pw``, ``...&token=...``); every URL crowdsafe prints, logs or
serves goes through ``redact`` first.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit

#: Query keys whose value is a secret (matched case-insensitively, also as a suffix: ``api_key``).
_SECRET_KEY = re.compile(r"(pass(word|wd)?|pwd|secret|token|auth|key|sig(nature)?|credential|session|"
                         r"user(name)?|login)$", re.IGNORECASE)
_MASK = "***"


def _query(query: str) -> str:
    parts = []
    for item in query.split("&"):
        key, eq, _value = item.partition("=")
        name = key.replace("-", "_").split("_")[-1] if key else key
        parts.append(f"{key}={_MASK}" if eq and (_SECRET_KEY.match(key) or _SECRET_KEY.match(name)) else item)
    return "&".join(parts)


def redact(url: str) -> str:
    """``url`` with its user part and any secret-looking query value replaced by ``***``."""
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket: show nothing after the scheme
        return url.split("://", 1)[0] + "://" + _MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{_MASK}@{netloc.rsplit('@', 1)[1]}"
    query = _query(parts.query) if parts.query else ""
    fragment = _query(parts.fragment) if "=" in parts.fragment else parts.fragment
    return SplitResult(parts.scheme, netloc, parts.path, query, fragment).geturl()
