"""The one-match shortcut for plain paths says exactly what the per-segment rules say: a path of
plain segments is accepted by every check and goes on the wire unchanged, and any other path takes
the per-segment checks (tests/integration/test_path_confinement.py proves those on the wire)."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aoai_proxy.errors import BadRequest
from aoai_proxy.paths import (
    _PLAIN_PATH,
    SEGMENT_SAFE,
    _segment_problem,
    check_request_path,
    confined,
    encode_path,
)

# Every character class the rules tell apart: plain ones, dots, escapes, separators, forbidden
# ones, characters to escape (space, "?", "#", "é", an astral one, a lone surrogate).
ALPHABET = "az09-._~!$&'()*+,;=:@%2eEfF/\\\x00\r\n ?#é\U0001f600\ud800"
PATHS = st.text(alphabet=ALPHABET, max_size=24).map(lambda tail: "/" + tail)


def _plain_by_the_segment_rules(path: str) -> bool:
    return all(
        _segment_problem(segment) is None and quote(segment, safe=SEGMENT_SAFE) == segment
        for segment in path[1:].split("/")
    )


@settings(max_examples=3000, deadline=None)
@given(PATHS | PATHS.map(lambda tail: "/openai" + tail))
@example("/openai/deployments/gpt-4o-mini/chat/completions")
@example("/openai/./x")
@example("/openai/../x")
@example("/openai/.../x")
@example("/openai/..a/.b")
@example("/openai/x/.")
@example("/openai/x/..")
@example("/openai/x\n")
@example("/openai/%2e%2e")
def test_the_shortcut_matches_exactly_the_paths_the_segment_rules_leave_unchanged(
    path: str,
) -> None:
    plain = _PLAIN_PATH.fullmatch(path) is not None
    assert plain == _plain_by_the_segment_rules(path)
    if plain:
        check_request_path(path)
        if path.startswith("/openai/"):
            assert encode_path(path) == path
            assert confined(path) == path


def test_a_plain_path_outside_openai_is_still_refused_upstream() -> None:
    with pytest.raises(BadRequest):
        encode_path("/api/aoaifn")
    with pytest.raises(BadRequest):
        confined("/healthz")
