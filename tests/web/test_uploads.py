"""Reading a POST: a field over its limit stops the reading there (the rest of the body is
never received), a declared length over the form's limit is refused before any byte, and
the device list is read as ``certflow rollout new --devices`` reads it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import Request

from certflow.core.errors import InvalidInput
from certflow.web._uploads import (
    Limit,
    TooLarge,
    Upload,
    read_device_list,
    read_form,
    size,
)

BOUNDARY = "certflowboundary"
CHUNK = 64 * 1024


def _multipart(field: str, filename: str, data: bytes) -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{filename}"\r\nContent-Type: text/plain\r\n\r\n'
        ).encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def _request(body: bytes, received: list[int], length: int | None = None) -> Request:
    chunks = [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)]
    headers = [(b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode())]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))

    async def receive() -> dict[str, Any]:
        index = len(received)
        received.append(index)
        return {
            "type": "http.request",
            "body": chunks[index],
            "more_body": index + 1 < len(chunks),
        }

    scope = {"type": "http", "method": "POST", "headers": headers, "path": "/new"}
    return Request(scope, receive)


def test_a_field_over_its_limit_stops_the_reading_there() -> None:
    body = _multipart("devices", "devices.txt", b"d\n" * (4 * 1024 * 1024))  # 8 MiB
    received: list[int] = []
    limits = {"devices": Limit(1024 * 1024, "a device list")}
    with pytest.raises(TooLarge, match=r"a device list 'devices.txt': larger than 1 MiB"):
        asyncio.run(read_form(_request(body, received), limits))
    total = -(-len(body) // CHUNK)
    assert len(received) <= 1024 * 1024 // CHUNK + 2  # about the limit's worth, not 8 MiB
    assert len(received) < total


def test_a_declared_length_over_the_form_limit_is_refused_before_a_byte() -> None:
    received: list[int] = []
    with pytest.raises(TooLarge, match=r"the form is 10,000,000,000 bytes, over the"):
        asyncio.run(read_form(_request(b"x", received, length=10**10), {}))
    assert received == []


def test_a_form_within_its_limits_is_read_whole_into_memory() -> None:
    body = _multipart("devices", "devices.txt", b"a\nb\n")
    form = asyncio.run(read_form(_request(body, []), {"devices": Limit(100, "a device list")}))
    assert form.files["devices"] == [Upload("devices.txt", b"a\nb\n")]


def test_too_many_files_for_a_field_are_refused() -> None:
    one = _multipart("existing", "a.crt", b"x")[: -len(f"--{BOUNDARY}--\r\n")]
    body = one + _multipart("existing", "b.crt", b"y")
    with pytest.raises(TooLarge, match="the current certificate: at most 1 file"):
        asyncio.run(
            read_form(_request(body, []), {"existing": Limit(100, "the current certificate")})
        )


def test_the_device_list_is_read_as_the_command_line_reads_it() -> None:
    text = "\ufeff a \r\n\nb\n  \nc"
    assert read_device_list(Upload("devices.txt", text.encode())) == ["a", "b", "c"]
    with pytest.raises(
        InvalidInput, match=r"devices.txt: 1 duplicate ids: line 3: device 'a' is already on line 1"
    ):
        read_device_list(Upload("devices.txt", b"a\nb\na\n"))
    with pytest.raises(InvalidInput, match=r"devices.txt: line 2: not UTF-8 text"):
        read_device_list(Upload("devices.txt", b"a\n\xff\n"))
    with pytest.raises(InvalidInput, match=r"devices.txt: no device ids"):
        read_device_list(Upload("devices.txt", b"\n \n"))


def test_sizes_read_as_people_read_them() -> None:
    assert [size(1024 * 1024), size(64 * 1024), size(1000)] == ["1 MiB", "64 KiB", "1,000 bytes"]
