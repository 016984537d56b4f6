"""What request input may hold: the size, count and depth limits and the characters refused,
each check raising an InvalidRequest that names the field. docs/security.md ("Input limits")
lists every limit (tests/api/test_bad_input.py checks it names each constant here).

Shared by the run service (submissions, run groups), the account service (user names) and
the API and web forms, so a rule is the same wherever the input comes in.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

from spindle.errors import InvalidRequest

#: the largest id a path or query takes (ids are SQL BIGINT)
MAX_ID = 2**63 - 1
#: the largest byte offset into a log (the largest integer a JSON number holds exactly)
MAX_OFFSET = 2**53 - 1
#: how deeply ``workflow_params`` may nest objects and arrays (``{"a": {"b": 1}}`` is 2)
MAX_PARAMS_DEPTH = 64
#: tags per run, and the characters of one tag's key and of its value
MAX_TAGS = 100
MAX_TAG_KEY = 255
MAX_TAG_VALUE = 1024
#: one attachment's name: bytes (UTF-8) of each folder or file name in it, bytes of the
#: whole relative path, and folders it may be nested in
MAX_ATTACHMENT_PART_BYTES = 255
MAX_ATTACHMENT_PATH_BYTES = 1024
MAX_ATTACHMENT_DEPTH = 32
#: bytes of one text field of a form (``workflow_params`` and the other RunWorkflow fields)
MAX_FIELD_BYTES = 1 << 20
#: parts of a ``POST /runs`` or submit form: files, and as many text fields
MAX_FORM_PARTS = 10_000
#: bytes a submission's body may have beyond the ``max_upload_bytes`` setting: its text
#: fields and the multipart framing
FORM_ROOM = 1 << 20

#: Unicode's bidirectional embeddings, overrides and isolates, which make text display in
#: another order than it is read ("Trojan Source")
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_LINE_BREAKS = frozenset("\t\n\r")


def has_control(value: str) -> bool:
    """Whether ``value`` holds a control, format, surrogate, private-use or unassigned
    character (Unicode category C: NUL, ESC, bidi overrides, zero-width characters)."""
    return any(unicodedata.category(c).startswith("C") for c in value)


def is_name(value: str) -> bool:
    """Whether ``value`` may be a name (of a user, a run group, a tag key): no character of
    :func:`has_control` and no spaces at either end."""
    return value == value.strip() and not has_control(value)


def bad_text_character(value: str, *, multiline: bool = False) -> str | None:
    """The first character free text (a description, a tag's value) must not hold, as
    ``U+XXXX``: a control character (tab and line breaks allowed where ``multiline``), a lone
    surrogate, a bidi override. None if there is none."""
    for c in value:
        category = unicodedata.category(c)
        if (
            (category == "Cc" and not (multiline and c in _LINE_BREAKS))
            or category == "Cs"
            or c in BIDI_CONTROLS
        ):
            return f"U+{ord(c):04X}"
    return None


def check_name(value: str, *, field: str) -> str:
    if not is_name(value):
        raise InvalidRequest(field, "must not start or end with spaces or hold control characters")
    return value


def check_text(value: str, *, field: str, multiline: bool = False) -> str:
    bad = bad_text_character(value, multiline=multiline)
    if bad is not None:
        raise InvalidRequest(field, f"must not hold control characters (it holds {bad})")
    return value


def check_tags(tags: Mapping[str, str], *, field: str = "tags") -> Mapping[str, str]:
    """At most MAX_TAGS tags; keys of 1 to MAX_TAG_KEY characters that are names; values of
    at most MAX_TAG_VALUE characters of single-line text."""
    if len(tags) > MAX_TAGS:
        raise InvalidRequest(field, f"has {len(tags)} tags; at most {MAX_TAGS} are accepted")
    for key, value in tags.items():
        shown = repr(key[:40] + ("..." if len(key) > 40 else ""))
        if not key or len(key) > MAX_TAG_KEY:
            raise InvalidRequest(field, f"key {shown} must be 1 to {MAX_TAG_KEY} characters")
        if not is_name(key):
            raise InvalidRequest(
                field,
                f"key {shown} must not start or end with spaces or hold control characters",
            )
        if len(value) > MAX_TAG_VALUE:
            raise InvalidRequest(
                field, f"the value of {shown} is longer than {MAX_TAG_VALUE} characters"
            )
        bad = bad_text_character(value)
        if bad is not None:
            raise InvalidRequest(
                field, f"the value of {shown} must not hold control characters (it holds {bad})"
            )
    return tags


def json_depth(value: Any) -> int:
    """How deeply ``value`` nests objects and arrays (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def check_depth(value: Any, *, field: str, limit: int = MAX_PARAMS_DEPTH) -> Any:
    depth = json_depth(value)
    if depth > limit:
        raise InvalidRequest(
            field, f"nests {depth} levels deep; at most {limit} levels are accepted"
        )
    return value


def clip_depth(value: Any, limit: int = MAX_PARAMS_DEPTH) -> Any:
    """``value`` with what nests deeper than ``limit`` replaced by a note: for reading back
    runs stored before the limit existed, which a response could not carry otherwise."""
    if json_depth(value) <= limit:
        return value

    def clip(item: Any, depth: int) -> Any:
        if not isinstance(item, dict | list):
            return item
        if depth >= limit:
            return f"(nested deeper than {MAX_PARAMS_DEPTH} levels; not shown)"
        if isinstance(item, dict):
            return {k: clip(v, depth + 1) for k, v in item.items()}
        return [clip(v, depth + 1) for v in item]

    return clip(value, 0)
