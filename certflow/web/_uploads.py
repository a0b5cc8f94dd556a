"""Reading a POST: bounded while it streams, kept in memory, never written anywhere.

Starlette's own form parser spools a large upload into a temporary file; the console's
rule is that uploads go nowhere but the store, so every body is parsed here, as it
arrives, into memory, each field against its own limit: certificate material against the
certificate tools' (:data:`certflow.certs.LIMIT`, a password
:data:`certflow.certs.PASSWORD_LIMIT`), a device list against :data:`DEVICE_LIST_LIMIT`,
anything else against :data:`FIELD_LIMIT`. A body whose declared length is over the sum
is refused before a byte of it is read; a field that grows past its limit stops the
reading there.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

import attrs
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from certflow import certs
from certflow.core.errors import InvalidInput

__all__ = [
    "DEVICE_LIST_LIMIT",
    "FIELD_LIMIT",
    "NEW_ROLLOUT_LIMITS",
    "Form",
    "Limit",
    "TooLarge",
    "Upload",
    "read_device_list",
    "read_form",
    "size",
]

#: The most bytes of a device list: a million ids of 60 characters and more.
DEVICE_LIST_LIMIT = 64 * 1024 * 1024
#: The most bytes of any other field (a name, a host list, a reason, a token).
FIELD_LIMIT = 64 * 1024
#: The most fields and files in one form.
MOST_PARTS = 64


def size(limit: int) -> str:
    """``1 MiB``, ``64 KiB``: a limit as a person reads it."""
    for unit, factor in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if limit >= factor and limit % factor == 0:
            return f"{limit // factor} {unit}"
    return f"{limit:,} bytes"


@attrs.frozen
class Limit:
    """What one field may hold: ``bytes`` each time, ``count`` times, read as ``what``."""

    bytes: int
    what: str
    count: int = 1


class TooLarge(InvalidInput):
    """A request, or one of its fields, over its limit: refused, nothing was kept."""


@attrs.frozen
class Upload:
    """A file of a form: its name as the browser gave it, and its bytes."""

    filename: str
    data: bytes


@attrs.define
class Form:
    """A POST's fields (text) and files, each by name, in order."""

    fields: dict[str, list[str]] = attrs.Factory(dict)
    files: dict[str, list[Upload]] = attrs.Factory(dict)

    def get(self, name: str, default: str = "") -> str:
        """The first value of field ``name``."""
        values = self.fields.get(name)
        return values[0] if values else default

    def as_dict(self) -> dict[str, Any]:
        """The first value of each field (what the CSRF check reads)."""
        return {name: values[0] for name, values in self.fields.items() if values}


async def read_form(request: Request, limits: Mapping[str, Limit] = {}) -> Form:
    """The form of ``request``, each field within its limit (``limits``, else
    :data:`FIELD_LIMIT`); :class:`TooLarge` names the first that is not."""
    total = sum(limit.bytes * limit.count for limit in limits.values())
    total += FIELD_LIMIT * 8 + 64 * 1024  # the small fields and the multipart framing
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > total:
        raise TooLarge(f"the form is {int(declared):,} bytes, over the {size(total)} it may hold")
    kind, params = parse_options_header(request.headers.get("content-type", ""))
    if kind == b"multipart/form-data":
        boundary = params.get(b"boundary")
        if not boundary:
            raise InvalidInput("the form is multipart without a boundary")
        return await _multipart(request, boundary, limits, total)
    if kind in (b"application/x-www-form-urlencoded", b""):
        return await _urlencoded(request, total)
    raise InvalidInput(f"a form was expected, got content of type {kind.decode('latin-1')!r}")


async def _urlencoded(request: Request, total: int) -> Form:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > FIELD_LIMIT * 8:
            raise TooLarge(f"the form is over the {size(FIELD_LIMIT * 8)} it may hold")
    form = Form()
    pairs = urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    if len(pairs) > MOST_PARTS:
        raise TooLarge(f"the form has {len(pairs)} fields, more than {MOST_PARTS}")
    for name, value in pairs:
        form.fields.setdefault(name, []).append(value)
    return form


class _Parts:
    """The multipart parser's callbacks: each part's headers and bytes, within limits."""

    def __init__(self, limits: Mapping[str, Limit]) -> None:
        self.limits = limits
        self.form = Form()
        self.parts = 0
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._data = bytearray()
        self._name = ""
        self._filename: str | None = None
        self._limit = Limit(FIELD_LIMIT, "a form field")

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MOST_PARTS:
            raise TooLarge(f"the form has more than {MOST_PARTS} fields and files")
        self._headers = {}
        self._data = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        self._filename = None if filename is None else filename.decode("utf-8", "replace")
        self._limit = self.limits.get(self._name, Limit(FIELD_LIMIT, "a form field"))
        if self._filename is not None:
            already = len(self.form.files.get(self._name, []))
            if already >= self._limit.count:
                raise TooLarge(
                    f"{self._limit.what}: at most {self._limit.count} file"
                    f"{'s' * (self._limit.count != 1)}"
                )

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._data += data[start:end]
        if len(self._data) > self._limit.bytes:
            shown = f" {self._filename!r}" if self._filename else ""
            raise TooLarge(
                f"{self._limit.what}{shown}: larger than {size(self._limit.bytes)}, the limit "
                f"for {self._limit.what}; nothing was kept"
            )

    def on_part_end(self) -> None:
        if self._filename is None:
            text = bytes(self._data).decode("utf-8", "replace")
            self.form.fields.setdefault(self._name, []).append(text)
        elif self._filename or self._data:  # a file input left empty sends neither
            upload = Upload(self._filename, bytes(self._data))
            self.form.files.setdefault(self._name, []).append(upload)
        self._data = bytearray()


async def _multipart(
    request: Request, boundary: bytes, limits: Mapping[str, Limit], total: int
) -> Form:
    parts = _Parts(limits)
    callbacks: Any = {
        name: getattr(parts, name)
        for name in (
            "on_part_begin",
            "on_part_data",
            "on_part_end",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
        )
    }
    parser = MultipartParser(boundary, callbacks)
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > total:
            raise TooLarge(f"the form is over the {size(total)} it may hold")
        parser.write(chunk)
    parser.finalize()
    return parts.form


def read_device_list(upload: Upload) -> list[str]:
    """Device ids, one per line (surrounding blanks and blank lines ignored), as
    ``certflow rollout new --devices`` reads them; a duplicate or an empty list is refused,
    naming the lines."""
    name = upload.filename or "the device list"
    try:
        text = upload.data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = upload.data[: error.start].count(b"\n") + 1
        raise InvalidInput(f"{name}: line {line}: not UTF-8 text") from None
    ids: list[str] = []
    first: dict[str, int] = {}
    duplicates: list[str] = []
    for number, text_line in enumerate(text.split("\n"), start=1):
        device = text_line.strip()
        if not device:
            continue
        if device in first:
            duplicates.append(
                f"line {number}: device {device!r} is already on line {first[device]}"
            )
            continue
        first[device] = number
        ids.append(device)
    if duplicates:
        shown = "; ".join(duplicates[:10])
        more = f"; and {len(duplicates) - 10:,} more" if len(duplicates) > 10 else ""
        raise InvalidInput(f"{name}: {len(duplicates):,} duplicate ids: {shown}{more}")
    if not ids:
        raise InvalidInput(f"{name}: no device ids (give one id per line)")
    return ids


#: The limits of the New rollout form.
NEW_ROLLOUT_LIMITS: dict[str, Limit] = {
    "material": Limit(certs.LIMIT, "certificate material", count=8),
    "existing": Limit(certs.LIMIT, "the current certificate"),
    "password": Limit(certs.PASSWORD_LIMIT, "the password"),
    "devices": Limit(DEVICE_LIST_LIMIT, "a device list"),
}
