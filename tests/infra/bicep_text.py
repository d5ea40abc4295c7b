"""Just enough of a Bicep reader for the infra tests: resources, outputs, object properties.

No Bicep compiler exists offline, so the tests read the templates as text. This reader is
string-aware (braces and ``//`` inside quoted strings are not structure) and strips comments,
so a property that is commented out does not count as set. It only understands what the
templates in infra/ use: literal object bodies, ``key: value`` lines, ``resource`` and
``output`` declarations. Anything it cannot find is reported as missing, so a test built on
it fails rather than passes when the template changes shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

INFRA = Path(__file__).resolve().parents[2] / "infra"


def strip_comments(text: str) -> str:
    """Remove ``//`` and ``/* */`` comments outside single-quoted strings (Bicep has no other)."""
    out: list[str] = []
    i, n = 0, len(text)
    in_string = False
    while i < n:
        ch = text[i]
        if in_string:
            out.append(ch)
            if ch == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if ch == "'":
                in_string = False
            i += 1
        elif ch == "'":
            in_string = True
            out.append(ch)
            i += 1
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def matching_brace(text: str, open_index: int) -> int:
    """Index of the brace/bracket closing the one at ``open_index`` (strings skipped)."""
    pairs = {"{": "}", "[": "]", "(": ")"}
    stack = [pairs[text[open_index]]]
    i = open_index + 1
    in_string = False
    while i < len(text):
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 1
            elif ch == "'":
                in_string = False
        elif ch == "'":
            in_string = True
        elif ch in pairs:
            stack.append(pairs[ch])
        elif ch in ")]}":
            if ch != stack.pop():
                raise ValueError(f"unbalanced {ch!r} at {i}")
            if not stack:
                return i
        i += 1
    raise ValueError(f"no closing brace for index {open_index}")


def top_level_entries(body: str) -> dict[str, str]:
    """``key: value`` pairs at the first level of an object body (the text between its braces).

    Values are returned as raw Bicep text (``'x'``, ``true``, ``param``, ``{ ... }``). Keys may be
    quoted. Nested objects/arrays are returned whole.
    """
    entries: dict[str, str] = {}
    key_re = re.compile(r"\s*('(?:[^'\\]|\\.)*'|[A-Za-z_][\w]*)\s*:\s*")
    i = 0
    while i < len(body):
        m = key_re.match(body, i)
        if not m:
            nl = body.find("\n", i)
            if nl < 0:
                break
            i = nl + 1
            continue
        key = m.group(1).strip("'")
        j = m.end()
        k = j
        # The value runs to the end of the line, extended over any bracket it opens.
        while k < len(body) and body[k] != "\n":
            if body[k] in "{[(":
                k = matching_brace(body, k) + 1
                continue
            if body[k] == "'":
                k = body.index("'", k + 1) + 1 if "'" in body[k + 1 :] else len(body)
                continue
            k += 1
        entries[key] = body[j:k].strip()
        i = k + 1
    return entries


def object_body(value: str) -> str | None:
    """The inside of ``{ ... }`` if ``value`` is an object literal, else None."""
    value = value.strip()
    if not value.startswith("{"):
        return None
    return value[1 : matching_brace(value, 0)]


def get_path(body: str, path: str) -> str | None:
    """Raw value at a dotted path (``properties.features.disableLocalAuth``), None if absent."""
    current: str | None = body
    parts = path.split(".")
    for index, part in enumerate(parts):
        if current is None:
            return None
        entries = top_level_entries(current)
        if part not in entries:
            return None
        value = entries[part]
        if index == len(parts) - 1:
            return value
        current = object_body(value)
    return None


@dataclass(frozen=True)
class Resource:
    file: Path
    symbol: str
    type: str
    api_version: str
    existing: bool
    body: str

    @property
    def properties(self) -> dict[str, str]:
        return top_level_entries(self.body)


@dataclass(frozen=True)
class Output:
    file: Path
    name: str
    type: str
    value: str
    decorators: str


_RESOURCE_RE = re.compile(
    r"^\s*resource\s+(?P<symbol>\w+)\s+'(?P<type>[^'@]+)@(?P<version>[^']+)'"
    r"(?P<existing>\s+existing)?\s*=\s*(?:if\s*\((?P<cond>.*?)\)\s*)?\{",
    re.MULTILINE,
)
_OUTPUT_RE = re.compile(
    r"(?P<decorators>(?:^\s*@.*\n)*)^\s*output\s+(?P<name>\w+)\s+(?P<type>\w+)\s*=\s*(?P<value>.+)$",
    re.MULTILINE,
)


def read(path: Path) -> str:
    return strip_comments(path.read_text(encoding="utf-8"))


def resources(text: str, file: Path = Path("<text>")) -> list[Resource]:
    """Resource declarations written with a full ``'Type@version'`` (the style infra/ uses)."""
    found: list[Resource] = []
    for m in _RESOURCE_RE.finditer(text):
        open_index = m.end() - 1
        body = text[open_index + 1 : matching_brace(text, open_index)]
        found.append(
            Resource(
                file=file,
                symbol=m.group("symbol"),
                type=m.group("type"),
                api_version=m.group("version"),
                existing=bool(m.group("existing")),
                body=body,
            )
        )
    return found


def outputs(text: str, file: Path = Path("<text>")) -> list[Output]:
    return [
        Output(
            file=file,
            name=m.group("name"),
            type=m.group("type"),
            value=m.group("value").strip(),
            decorators=m.group("decorators"),
        )
        for m in _OUTPUT_RE.finditer(text)
    ]


def param_default(text: str, name: str) -> str | None:
    m = re.search(rf"^\s*param\s+{name}\s+\w+\s*=\s*(.+)$", text, re.MULTILINE)
    return m.group(1).strip() if m else None


def var_object(text: str, name: str) -> dict[str, str]:
    m = re.search(rf"^\s*var\s+{name}\s*=\s*\{{", text, re.MULTILINE)
    if not m:
        return {}
    open_index = m.end() - 1
    return top_level_entries(text[open_index + 1 : matching_brace(text, open_index)])


def bicep_files(root: Path = INFRA) -> list[Path]:
    return sorted(root.rglob("*.bicep"))


def unquote(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    return value
