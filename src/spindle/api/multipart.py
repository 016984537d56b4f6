"""Reading a request's form (``POST /runs``, the UI's submit form) so that every refusal of
the form parser is an error naming the part it concerns.

Starlette's parsers stop at the limits they are given but say only "Part exceeded maximum
size of 1024KB.", naming no field; the parsers here are Starlette's with that message
naming the part, raised as a :class:`PayloadTooLarge` (a size) or an
:class:`InvalidRequest` (anything else the parser refuses).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.datastructures import FormData
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.requests import Request

from spindle.errors import InvalidRequest, PayloadTooLarge
from spindle.limits import FORM_ROOM, MAX_FIELD_BYTES, MAX_FORM_PARTS


class _PartTooLarge(MultiPartException):
    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        super().__init__(f"{name or 'a form field'}: is larger than {limit // 1024} KiB")


class _MultiPartParser(MultiPartParser):
    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        try:
            super().on_part_data(data, start, end)
        except MultiPartException:
            # (Starlette's own part, whose name its headers gave)
            part = getattr(self, "_current_part", None)
            raise _PartTooLarge(getattr(part, "field_name", ""), self.max_part_size) from None


class _FormParser(FormParser):
    def _too_large(self) -> _PartTooLarge:
        name = bytes(getattr(self, "_field_name", b"")).decode("latin-1")
        return _PartTooLarge(name, self.max_part_size)

    def on_field_name(self, data: bytes, start: int, end: int) -> None:
        try:
            super().on_field_name(data, start, end)
        except MultiPartException:
            raise self._too_large() from None

    def on_field_data(self, data: bytes, start: int, end: int) -> None:
        try:
            super().on_field_data(data, start, end)
        except MultiPartException:
            raise self._too_large() from None


def check_length(request: Request, max_bytes: int) -> None:
    """A 413 before reading a submission (``POST /runs``, the UI's submit form) whose
    Content-Length is over ``max_bytes`` of attachments and room for its text fields."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes + FORM_ROOM:
        raise PayloadTooLarge(f"request body: {length} bytes is over the limit of {max_bytes}")


@contextlib.asynccontextmanager
async def read_form(
    request: Request,
    *,
    max_parts: int = MAX_FORM_PARTS,
    max_field_bytes: int = MAX_FIELD_BYTES,
) -> AsyncIterator[FormData]:
    """The request's form (multipart or urlencoded; any other body is an empty form), its
    uploaded files closed on leaving the block. ``max_parts`` files and as many text fields;
    each text field at most ``max_field_bytes``."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if content_type == "multipart/form-data":
            async with contextlib.aclosing(request.stream()) as stream:
                form = await _MultiPartParser(
                    request.headers,
                    stream,
                    max_files=max_parts,
                    max_fields=max_parts,
                    max_part_size=max_field_bytes,
                ).parse()
        elif content_type == "application/x-www-form-urlencoded":
            async with contextlib.aclosing(request.stream()) as stream:
                form = await _FormParser(
                    request.headers,
                    stream,
                    max_fields=max_parts,
                    max_part_size=max_field_bytes,
                ).parse()
        else:
            form = FormData()
    except _PartTooLarge as exc:
        raise PayloadTooLarge(exc.message) from None
    except MultiPartException as exc:
        raise InvalidRequest("request body", exc.message) from None
    try:
        yield form
    finally:
        await form.close()
