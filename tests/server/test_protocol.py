import struct

import numpy as np
import orjson
import pytest
from infergate_server.backends.base import TensorSpec
from infergate_server.errors import InvalidInput
from infergate_server.protocol import encode_response, parse_request

SPECS = {"x": TensorSpec("x", "FP32", (-1, 4))}


def _body(**tensor: object) -> bytes:
    t = {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
    t.update(tensor)
    return orjson.dumps({"inputs": [t]})


def test_json_tensor_decodes_flat_or_nested() -> None:
    assert parse_request(_body(), None, SPECS).inputs["x"].tolist() == [[1, 2, 3, 4]]
    nested = parse_request(_body(data=[[1, 2, 3, 4]]), None, SPECS).inputs["x"]
    assert nested.dtype == np.float32
    assert nested.shape == (1, 4)


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        ({"datatype": "INT64"}, "input 'x': datatype 'INT64', the model expects FP32"),
        ({"shape": [1, 3], "data": [1, 2, 3]}, r"input 'x': shape \[1, 3\], the model expects \[-1, 4\]"),
        ({"shape": [2, 4]}, r"input 'x': shape \[2, 4\] needs 8 values, data has 4"),
        ({"data": ["a", "b", "c", "d"]}, "input 'x': FP32 data holds str values"),
        ({"name": "nope"}, "input 'nope': the model has no such input"),
        ({"shape": "1,4"}, "input 'x': 'shape' must be a list"),
    ],
)
def test_contract_violations_name_the_tensor(tensor: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_request(_body(**tensor), None, SPECS)


def test_malformed_and_non_utf8_bodies_are_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="not valid JSON"):
        parse_request(b'{"inputs": [', None, SPECS)
    with pytest.raises(InvalidInput, match="not valid JSON"):
        parse_request(b'{"inputs": "\xff\xfe"}', None, SPECS)
    with pytest.raises(InvalidInput, match="non-empty list"):
        parse_request(b'{"inputs": []}', None, SPECS)


def test_binary_tensor_extension_round_trip() -> None:
    data = np.arange(8, dtype=np.float32).reshape(2, 4)
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 32}}
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    req = parse_request(header + data.tobytes(), len(header), SPECS)
    assert np.array_equal(req.inputs["x"], data)
    body, json_len = encode_response("m", "1", req, {"y": data * 2})
    assert json_len is not None
    doc = orjson.loads(body[:json_len])
    assert doc["outputs"][0]["parameters"] == {"binary_data_size": 32}
    assert np.array_equal(np.frombuffer(body[json_len:], np.float32).reshape(2, 4), data * 2)


def test_binary_bytes_are_length_prefixed() -> None:
    specs = {"text": TensorSpec("text", "BYTES", (-1,))}
    blob = b"".join(struct.pack("<I", len(s)) + s for s in (b"hi", b"there"))
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "text", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 15}}
            ]
        }
    )
    req = parse_request(header + blob, len(header), specs)
    assert req.inputs["text"].tolist() == [b"hi", b"there"]


def test_json_response_lists_requested_outputs_only() -> None:
    req = parse_request(
        orjson.dumps({"inputs": orjson.loads(_body())["inputs"], "outputs": [{"name": "b"}]}), None, SPECS
    )
    body, json_len = encode_response("m", "1", req, {"a": np.zeros((1, 2), np.float32), "b": np.ones((1, 1))})
    assert json_len is None
    assert orjson.loads(body)["outputs"] == [
        {"name": "b", "shape": [1, 1], "datatype": "FP64", "data": [1.0]}
    ]


@pytest.mark.parametrize(
    ("datatype", "value"),
    [("UINT64", -1), ("UINT8", 256), ("INT64", 2**63), ("UINT32", -5)],
)
def test_integers_out_of_range_for_the_datatype_are_refused_not_wrapped(datatype: str, value: int) -> None:
    specs = {"x": TensorSpec("x", datatype, (-1,))}
    body = orjson.dumps({"inputs": [{"name": "x", "shape": [2], "datatype": datatype, "data": [1, value]}]})
    with pytest.raises(InvalidInput, match=f"out of range for {datatype}"):
        parse_request(body, None, specs)


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        ("FP32", [1.0, None], "FP32 data holds NoneType values"),
        ("FP32", [1.0, "2.5"], "FP32 data holds str values"),
        ("INT64", [1, 2.5], "INT64 data holds float values"),
        ("BOOL", [True, 1], "BOOL data holds int values"),
        ("BYTES", ["a", 1], "BYTES data holds int values"),
        ("FP32", [1.0, {"a": 1}], "FP32 data holds dict values"),
    ],
)
def test_element_types_are_checked_against_the_datatype(
    datatype: str, data: list[object], message: str
) -> None:
    specs = {"x": TensorSpec("x", datatype, (-1,))}
    body = orjson.dumps({"inputs": [{"name": "x", "shape": [2], "datatype": datatype, "data": data}]})
    with pytest.raises(InvalidInput, match=message):
        parse_request(body, None, specs)


def test_rows_over_the_cap_are_refused_before_any_data_is_decoded() -> None:
    # 4 M empty BYTES elements declared; the data is not even there: the shape alone answers.
    specs = {"text": TensorSpec("text", "BYTES", (-1,))}
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "text",
                    "shape": [4_000_000],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": 4},
                }
            ]
        }
    )
    with pytest.raises(
        InvalidInput, match=r"4000000 rows in one request, over runtime\.batching\.maxBatchSize=16"
    ):
        parse_request(header + b"\x00" * 4, len(header), specs, max_rows=16)
