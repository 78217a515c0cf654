"""mest.codecs: numpy-aware JSON and encoding response bodies to bytes with a Content-Type."""

from __future__ import annotations

import numpy as np
import orjson
import pydantic
import pytest

from mest.api import Response
from mest.codecs import json
from mest.codecs.body import encode_body
from mest.errors import BadRequest

# -- json.dumps ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.array([1, 2, 3]), [1, 2, 3]),
        (np.array([[1.5, 2.5], [3.5, 4.5]], dtype=np.float32), [[1.5, 2.5], [3.5, 4.5]]),
        (np.array([0.1, 0.2]), [0.1, 0.2]),
        (np.array([True, False]), [True, False]),
        (np.array([0.5, 1.5, -2.0], dtype=np.float16), [0.5, 1.5, -2.0]),
        (np.array([1, 2], dtype=np.uint8), [1, 2]),
        (np.array(["a", "b"], dtype=object), ["a", "b"]),
        (np.zeros((0,)), []),
        (np.int64(7), 7),
        (np.int32(-3), -3),
        (np.float64(0.25), 0.25),
        (np.float32(1.5), 1.5),
        (np.float16(2.5), 2.5),
        (np.bool_(True), True),
    ],
    ids=lambda v: f"{type(v).__name__}-{getattr(v, 'dtype', '')}",
)
def test_numpy_values(value: object, expected: object) -> None:
    assert orjson.loads(json.dumps(value)) == expected


def test_non_contiguous_arrays() -> None:
    base = np.arange(12, dtype=np.float64).reshape(3, 4)
    assert not base[:, ::2].flags.c_contiguous
    assert orjson.loads(json.dumps(base[:, ::2])) == [[0.0, 2.0], [4.0, 6.0], [8.0, 10.0]]
    assert orjson.loads(json.dumps(base.T)) == base.T.tolist()
    assert orjson.loads(json.dumps({"p": base[::-1, 0]})) == {"p": [8.0, 4.0, 0.0]}


def test_numpy_inside_containers() -> None:
    value = {"probability": np.array([0.1, 0.9]), "label": np.int64(1), "nested": [np.float32(0.5)]}
    assert orjson.loads(json.dumps(value)) == {"probability": [0.1, 0.9], "label": 1, "nested": [0.5]}


def test_plain_python_values() -> None:
    assert json.dumps({"a": [1, "x", None, True, 1.5]}) == b'{"a":[1,"x",null,true,1.5]}'


def test_non_string_keys() -> None:
    assert orjson.loads(json.dumps({1: "a", 2: "b"})) == {"1": "a", "2": "b"}


def test_sets() -> None:
    assert sorted(orjson.loads(json.dumps({3, 1, 2}))) == [1, 2, 3]
    assert orjson.loads(json.dumps(frozenset({"a"}))) == ["a"]


def test_pydantic_models() -> None:
    class Prediction(pydantic.BaseModel):
        label: str
        score: float

    assert orjson.loads(json.dumps({"result": Prediction(label="setosa", score=0.9)})) == {
        "result": {"label": "setosa", "score": 0.9}
    }


def test_pydantic_like_objects_with_model_dump() -> None:
    class Like:
        def model_dump(self, mode: str = "python") -> dict[str, str]:
            return {"mode": mode}

    assert orjson.loads(json.dumps(Like())) == {"mode": "json"}


def test_unserializable_object_raises_type_error() -> None:
    class Opaque:
        pass

    with pytest.raises(TypeError, match="Opaque"):
        json.dumps({"x": Opaque()})


# -- json.loads ----------------------------------------------------------------------------------------


def test_loads_bytes_and_str() -> None:
    assert json.loads(b'{"features": [[5.1, 3.5]]}') == {"features": [[5.1, 3.5]]}
    assert json.loads("[1, 2]") == [1, 2]


@pytest.mark.parametrize("data", [b"{", b"", b"not json", b'{"a": }', b"\xff\xfe", b"[1, 2,]", "{'a': 1}"])
def test_malformed_json_is_a_bad_request(data: bytes | str) -> None:
    with pytest.raises(BadRequest) as info:
        json.loads(data)
    assert info.value.status == 400
    assert info.value.message.startswith("Malformed JSON")
    assert isinstance(info.value.__cause__, orjson.JSONDecodeError)


@pytest.mark.parametrize(
    ("media_type", "expected"),
    [
        ("application/json", True),
        ("application/problem+json", True),
        ("application/vnd.api+json", True),
        ("text/plain", False),
        ("application/jsonx", False),
        ("application/octet-stream", False),
        (None, False),
    ],
)
def test_is_json(media_type: str | None, expected: bool) -> None:
    assert json.is_json(media_type) is expected


# -- body.encode_body ------------------------------------------------------------------------------------


def encoded(resp: Response) -> Response:
    encode_body(resp)
    return resp


def content_types(resp: Response) -> list[str]:
    return [value for name, value in resp.headers if name.lower() == "content-type"]


def test_encode_body_bytes() -> None:
    resp = encoded(Response(b"\x00\x01"))
    assert resp.body == b"\x00\x01"
    assert content_types(resp) == ["application/octet-stream"]


def test_encode_body_str_is_utf8_text() -> None:
    resp = encoded(Response("héllo"))
    assert resp.body == "héllo".encode()
    assert content_types(resp) == ["text/plain; charset=utf-8"]


def test_encode_body_json() -> None:
    resp = encoded(Response({"probability": np.array([0.25, 0.75])}))
    assert resp.body == b'{"probability":[0.25,0.75]}'
    assert content_types(resp) == ["application/json"]


def test_encode_body_none_is_json_null() -> None:
    resp = encoded(Response(None))
    assert resp.body == b"null"
    assert content_types(resp) == ["application/json"]


@pytest.mark.parametrize("status", [204, 304])
def test_encode_body_no_content(status: int) -> None:
    resp = encoded(Response(status=status))
    assert resp.body == b""
    assert content_types(resp) == []


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b"<png>", "image/png", b"<png>"),
        ("a,b\n1,2\n", "text/csv", b"a,b\n1,2\n"),
        ({"a": 1}, "application/problem+json", b'{"a":1}'),
    ],
)
def test_encode_body_keeps_an_explicit_content_type(body: object, content_type: str, expected: bytes) -> None:
    resp = encoded(Response(body, headers={"content-TYPE": content_type}))
    assert resp.body == expected
    assert content_types(resp) == [content_type]


def test_encode_body_works_in_place_keeping_status_and_other_headers() -> None:
    resp = Response("x", status=201, headers={"X-Custom": "1"})
    assert encode_body(resp) is None
    assert resp.body == b"x"
    assert resp.status == 201
    assert resp.get_header("x-custom") == "1"


def test_encode_body_unserializable_raises_type_error() -> None:
    with pytest.raises(TypeError):
        encoded(Response({"x": object()}))
