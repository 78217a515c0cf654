"""mest.api: Headers, Request (lazy, limited body) and Response, with no server involved."""

from __future__ import annotations

import io

import pytest

from mest.api import BodyTooLarge, Headers, Request, Response

# -- Headers -------------------------------------------------------------------------------------------


def test_headers_are_case_insensitive() -> None:
    headers = Headers({"Content-Type": "application/json", "X-Request-ID": "abc"})
    assert headers["content-type"] == "application/json"
    assert headers["CONTENT-TYPE"] == "application/json"
    assert headers.get("x-request-id") == "abc"
    assert "X-REQUEST-ID" in headers
    assert "x-missing" not in headers
    assert headers.get("x-missing") is None
    assert headers.get("x-missing", "default") == "default"
    with pytest.raises(KeyError):
        headers["x-missing"]


def test_headers_accept_pairs_and_join_repeated_names() -> None:
    headers = Headers([("Accept", "text/plain"), ("accept", "application/json"), ("X-One", "1")])
    assert headers["accept"] == "text/plain, application/json"
    assert len(headers) == 2
    assert sorted(headers) == ["accept", "x-one"]


def test_headers_contains_only_strings() -> None:
    headers = Headers({"a": "1"})
    assert 1 not in headers
    assert None not in headers


# -- Request: metadata -----------------------------------------------------------------------------------


def test_request_basics() -> None:
    req = Request("post", "/api/v1/predict", headers={"X-A": "1"}, client_addr="10.0.0.1")
    assert req.method == "POST"
    assert req.path == "/api/v1/predict"
    assert req.headers["x-a"] == "1"
    assert req.client_addr == "10.0.0.1"
    assert req.request_id == ""
    assert req.context == {}
    assert req.max_body_size is None
    assert repr(req) == "<Request POST /api/v1/predict id=''>"


def test_request_context_is_per_request() -> None:
    first, second = Request("GET", "/"), Request("GET", "/")
    first.context["x"] = 1
    assert second.context == {}


def test_request_keeps_a_headers_instance() -> None:
    headers = Headers({"A": "1"})
    assert Request("GET", "/", headers=headers).headers is headers


def test_request_query_parses_last_value_wins_and_keeps_blanks() -> None:
    req = Request("GET", "/", query_string="a=1&b=&a=2&c=x%20y")
    assert req.query == {"a": "2", "b": "", "c": "x y"}
    assert Request("GET", "/").query == {}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("application/json", "application/json"),
        ("Application/JSON; charset=UTF-8", "application/json"),
        ("  text/plain ;charset=utf-8", "text/plain"),
        ("", None),
        (";charset=utf-8", None),
    ],
)
def test_request_content_type_is_lowercase_media_type_without_parameters(raw: str, expected: str | None) -> None:
    assert Request("POST", "/", headers={"Content-Type": raw}).content_type == expected


def test_request_content_type_missing() -> None:
    assert Request("POST", "/").content_type is None


# -- Request: body -------------------------------------------------------------------------------------


def test_body_is_not_read_until_asked_for() -> None:
    stream = io.BytesIO(b"hello")
    req = Request("POST", "/", stream=stream, content_length=5)
    assert stream.tell() == 0
    assert req.content_length == 5
    assert req.body == b"hello"
    assert stream.tell() == 5


def test_body_is_read_once() -> None:
    stream = io.BytesIO(b"hello")
    req = Request("POST", "/", stream=stream, content_length=5)
    first = req.body
    stream.seek(0)
    stream.write(b"XXXXX")
    stream.seek(0)
    assert req.body is first
    assert stream.tell() == 0  # the second access did not touch the stream


def test_body_reads_exactly_content_length_bytes() -> None:
    # On a keep-alive connection the stream holds the next request after this one's body.
    stream = io.BytesIO(b"abcdefNEXT REQUEST")
    req = Request("POST", "/", stream=stream, content_length=6, max_body_size=100)
    assert req.body == b"abcdef"
    assert stream.tell() == 6


def test_zero_content_length_reads_nothing() -> None:
    stream = io.BytesIO(b"unrelated")
    req = Request("POST", "/", stream=stream, content_length=0)
    assert req.body == b""
    assert stream.tell() == 0


def test_body_given_as_bytes() -> None:
    req = Request("POST", "/", body=b"abc")
    assert req.body == b"abc"
    assert req.content_length == 3


def test_no_stream_means_empty_body() -> None:
    assert Request("GET", "/").body == b""


def test_declared_length_over_limit_is_refused_before_reading() -> None:
    stream = io.BytesIO(b"x" * 50)
    req = Request("POST", "/", stream=stream, content_length=200_000_000, max_body_size=10)
    with pytest.raises(BodyTooLarge) as info:
        _ = req.body
    assert stream.tell() == 0
    assert info.value.limit == 10
    assert "10 bytes" in str(info.value)


def test_declared_length_at_limit_is_accepted() -> None:
    req = Request("POST", "/", stream=io.BytesIO(b"x" * 10), content_length=10, max_body_size=10)
    assert req.body == b"x" * 10


@pytest.mark.parametrize("size", [0, 1, 9, 10])
def test_chunked_body_within_limit(size: int) -> None:
    req = Request("POST", "/", stream=io.BytesIO(b"x" * size), max_body_size=10)
    assert req.content_length is None
    assert req.body == b"x" * size
    assert req.content_length == size


@pytest.mark.parametrize("size", [11, 12, 10_000])
def test_chunked_body_over_limit_reads_at_most_one_byte_past_it(size: int) -> None:
    stream = io.BytesIO(b"x" * size)
    req = Request("POST", "/", stream=stream, max_body_size=10)
    with pytest.raises(BodyTooLarge):
        _ = req.body
    assert stream.tell() <= 11


def test_chunked_body_without_limit_reads_everything() -> None:
    req = Request("POST", "/", stream=io.BytesIO(b"x" * 5000))
    assert req.body == b"x" * 5000


def test_max_body_size_can_be_set_after_construction() -> None:
    # Mest sets the limit from its settings after the adapter built the request.
    req = Request("POST", "/", stream=io.BytesIO(b"x" * 20), content_length=20)
    req.max_body_size = 10
    with pytest.raises(BodyTooLarge):
        _ = req.body


def test_body_too_large_is_not_a_mest_error() -> None:
    # mest.api imports nothing of mest: the pipeline translates it into a 413.
    from mest.errors import MestError

    assert not issubclass(BodyTooLarge, MestError)


# -- Response ------------------------------------------------------------------------------------------


def test_response_defaults() -> None:
    resp = Response()
    assert resp.body is None
    assert resp.status == 200
    assert resp.headers == []
    assert repr(resp) == "<Response 200>"


def test_response_headers_from_mapping_or_pairs() -> None:
    assert Response(headers={"A": "1", "B": "2"}).headers == [("A", "1"), ("B", "2")]
    assert Response(headers=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]).headers == [
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    ]


def test_response_status_is_an_int() -> None:
    from http import HTTPStatus

    resp = Response(status=HTTPStatus.CREATED)
    assert resp.status == 201
    assert type(resp.status) is int


def test_response_get_header_is_case_insensitive_and_returns_the_first() -> None:
    resp = Response(headers=[("X-Tag", "first"), ("x-tag", "second")])
    assert resp.get_header("x-TAG") == "first"
    assert resp.get_header("missing") is None
