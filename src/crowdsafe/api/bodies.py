"""Reading a JSON request body so that no byte sequence can make the server answer 500.

``json.loads`` alone lets four kinds of hostile body through to code that then fails: nesting
deep enough to exhaust the recursion limit (``'[' * 1000``), numbers that overflow to infinity
(``1e999999``) or the non-standard ``NaN``/``Infinity``, integers longer than Python converts,
and ``\\ud800`` escapes, which decode to lone surrogates that cannot be written back as UTF-8
(the error response itself then fails). Each is refused here with a 400/422 that names it, and
nothing of the body is echoed back.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import HTTPException
from pydantic import BaseModel, ValidationError

#: Deeper than any body this API takes (an acknowledgement is one level); far below the recursion limit.
MAX_DEPTH = 16
M = TypeVar("M", bound=BaseModel)


class BadBody(ValueError):
    """A body that is not acceptable JSON; the message says why, for the client."""


def _depth(raw: bytes) -> int:
    """Deepest nesting of brackets outside strings (a bracket inside a string is text); one linear
    pass, since a regular expression for strings backtracks quadratically on unclosed ones."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in raw:
        if in_string:
            if escaped:
                escaped = False
            elif ch == 0x5C:  # backslash
                escaped = True
            elif ch == 0x22:  # quote
                in_string = False
        elif ch == 0x22:
            in_string = True
        elif ch in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif ch in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise BadBody(f"number {text[:20]} is out of range")
    return value


def _constant(name: str) -> Any:
    raise BadBody(f"{name} is not a JSON number (numbers must be finite)")


def _check_text(value: Any, where: str = "body") -> None:
    """Every string and key must be valid Unicode (no lone surrogate from a ``\\udXXX`` escape)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadBody(f"{where} holds a lone surrogate escape (\\ud800-\\udfff): "
                          "not valid Unicode") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, where)
            _check_text(item, f"{where}.{key}" if isinstance(key, str) and key.isidentifier() else where)
    elif isinstance(value, list):
        for item in value:
            _check_text(item, where)


def parse_json(raw: bytes) -> Any:
    """The parsed body, or ``BadBody`` saying what is wrong with it."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadBody("body is not UTF-8 text") from None
    if _depth(raw) > MAX_DEPTH:
        raise BadBody(f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(raw, parse_float=_finite, parse_constant=_constant)
    except BadBody:
        raise
    except RecursionError:  # not reachable after the depth check; kept so it can never be a 500
        raise BadBody(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise BadBody(f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise BadBody(f"body is not acceptable JSON: {str(exc)[:120]}") from None
    _check_text(value)
    return value


def validation_detail(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors without the offending input or context (never echo what was sent)."""
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False, include_context=False)]


def model_body(raw: bytes, model: type[M]) -> M:
    """``raw`` parsed and validated as ``model``: 400 for a body that is not acceptable JSON, 422
    for JSON of the wrong shape, each naming the problem."""
    try:
        return model.model_validate(parse_json(raw))
    except BadBody as exc:
        raise HTTPException(400, str(exc)) from None
    except ValidationError as exc:
        raise HTTPException(422, validation_detail(exc)) from None
