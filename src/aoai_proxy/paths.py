"""Path confinement: no call reaches Azure OpenAI outside /openai/, whatever its encoding.

The request path arrives percent-decoded once (by the ASGI server, or by the Functions host for
route values). Every segment of that decoded path is checked here and the upstream path is
re-encoded from the checked segments, so neither a dot segment (which httpx and yarl resolve
themselves: `/openai/../x` would go out as `/x`, with our Entra ID token) nor a CR/LF can reach
the wire. `confined` is the last check, where the upstream URL is built, whatever HTTP client
builds it.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

from .errors import BadRequest

API_PREFIX = "/openai/"

# Escapes still present after the one decode: double encoding (`%252e` -> `%2e`), which a later
# hop could decode into a dot segment or a slash.
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_FORBIDDEN = {"\\": "a backslash", "\x00": "a NUL", "\r": "a CR", "\n": "an LF"}
# RFC 3986 pchar without "%": what a segment keeps as is on the wire; everything else is escaped.
SEGMENT_SAFE = "-._~!$&'()*+,;=:@"
_WIRE_PATH = re.compile(r"(?:/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-F]{2})+)+")
# A path of plain segments: nothing to escape, so decoded and on the wire it is the same string, and
# every check of `_segment_problem` holds (not empty, not a dot segment, only these characters).
# Nearly every call's path is one: one match instead of a check and an escape per segment.
_PLAIN_PATH = re.compile(r"(?:/(?!\.\.?(?:/|\Z))[A-Za-z0-9\-._~!$&'()*+,;=:@]+)+")


def encode_path(decoded: str) -> str:
    """The upstream path for `decoded` (a request path after its one percent-decoding): each
    segment checked, then escaped on its own. BadRequest names the first unsafe segment."""
    if not decoded.startswith(API_PREFIX):
        raise BadRequest(f"The request path must start with {API_PREFIX}.")
    if _PLAIN_PATH.fullmatch(decoded):
        return decoded
    check_request_path(decoded)
    return "/" + "/".join(quote(segment, safe=SEGMENT_SAFE) for segment in decoded[1:].split("/"))


def check_request_path(decoded: str) -> None:
    """The whole request path as the server decoded it, before routing: a router may drop part
    of it (Starlette's `$` matches before a trailing LF), so route values alone are not enough."""
    if _PLAIN_PATH.fullmatch(decoded):
        return
    for position, segment in enumerate(decoded[1:].split("/"), 1):
        problem = _segment_problem(segment)
        if problem is not None:
            raise BadRequest(f"The request path is not valid: segment {position} {problem}.")


def confined(path: str) -> str:
    """`path` unchanged if it is an escaped path under /openai/ that stays there however a client
    library or a later hop normalises or decodes it: every segment, decoded, passes the checks of
    `encode_path` and holds no slash. Else BadRequest. Called where the upstream URL is built."""
    if path.startswith(API_PREFIX) and _PLAIN_PATH.fullmatch(path):
        return path  # nothing escaped, so nothing a decode could turn into a dot or a slash
    if path.startswith(API_PREFIX) and _WIRE_PATH.fullmatch(path) is not None:
        try:
            decoded = [unquote(segment, errors="strict") for segment in path[1:].split("/")]
        except UnicodeDecodeError:
            decoded = [""]
        if all("/" not in part and _segment_problem(part) is None for part in decoded):
            return path
    raise BadRequest(f"The upstream path is not a plain path under {API_PREFIX}.")


def _segment_problem(segment: str) -> str | None:
    if segment == "":
        return "is empty"
    if segment in (".", ".."):
        return f"is a dot segment ({segment!r})"
    for char, name in _FORBIDDEN.items():
        if char in segment:
            return f"contains {name}"
    if _ESCAPE.search(segment):
        return "is percent-encoded twice"
    try:
        segment.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    return None
