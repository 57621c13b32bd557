"""The control API's HTTP parsing, sans-IO: complete, incomplete, oversize and malformed requests."""

from __future__ import annotations

import json

import pytest

from simulators.netsim.control import (
    BODY_BYTES_MAX,
    HttpError,
    HttpRequest,
    json_body,
    parse_request,
    render_response,
)


def test_complete_request_with_body_is_parsed():
    """If the head and Content-Length bytes of body are there, then the request comes out whole."""
    data = b"PUT /faults?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}"
    assert parse_request(data) == HttpRequest("PUT", "/faults", {"host": "a", "content-length": "2"}, b"{}")


@pytest.mark.parametrize(
    "data", [b"GET /status HTTP/1.1\r\n", b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\n{}"]
)
def test_incomplete_request_needs_more(data):
    """If the head or the body is not complete yet, then parsing says: need more data."""
    assert parse_request(data) is None


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (BODY_BYTES_MAX + 1), 413),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 9000, 413),
    ],
)
def test_malformed_or_oversize_request_is_refused(data, status):
    """If the request line, a header or the length is wrong, or the request too large, then HttpError says which status."""
    with pytest.raises(HttpError) as caught:
        parse_request(data)
    assert caught.value.status == status


def test_json_body_error_gives_the_position_not_the_text():
    """If the body is not JSON, then the error gives where it broke and none of the body."""
    request = HttpRequest("PUT", "/faults", {}, b'{"pan": "4761739001010010",')
    with pytest.raises(HttpError) as caught:
        json_body(request)
    assert "4761739001010010" not in caught.value.message
    assert json_body(HttpRequest("POST", "/drop", {}, b"")) == {}


def test_response_has_length_and_closes():
    """If a response is rendered, then it carries its JSON with the right Content-Length and Connection: close."""
    raw = render_response(200, {"a": 1})
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in head
    assert int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]) == len(body)
    assert json.loads(body) == {"a": 1}
