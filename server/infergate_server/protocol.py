"""Open Inference Protocol v2 on the wire: decode an infer request into numpy tensors, encode a response.

Supports JSON tensors and Triton's binary tensor extension (`Inference-Header-Content-Length`, per-tensor
`binary_data_size`), which the official tritonclient uses by default.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import orjson

from .backends.base import Tensor, TensorSpec
from .datatypes import FLOAT_TYPES, INT_TYPES, OIP_TO_NUMPY, element_size, oip_of
from .errors import InvalidInput

# How each datatype's JSON leaves are checked before numpy sees them: np.array() on numbers with one long
# string among them first builds a fixed-width unicode array of len(list) x len(longest string)
# characters (2 MiB of JSON cost 750 MiB). sum() is the cheap check (one C loop, no call per element): it
# refuses strings, nulls, objects and lists among numbers, and its result is a float iff a float is there.
_NUMBERS = "numbers"  # FP*: ints and floats (and bools, as 0/1)
_INTEGERS = "integers"  # INT*/UINT*: ints (and bools), no floats
_LEAF_CHECK: dict[str, str | frozenset[type]] = {"BOOL": frozenset({bool}), "BYTES": frozenset({str})}
for _t in INT_TYPES:
    _LEAF_CHECK[_t] = _INTEGERS
for _t in FLOAT_TYPES:
    _LEAF_CHECK[_t] = _NUMBERS


_LENGTH = struct.Struct("<I")
_MISSING: Any = object()


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass
class InferRequest:
    inputs: dict[str, Tensor]
    outputs: list[RequestedOutput] | None
    binary_default: bool
    id: str | None = None

    @property
    def rows(self) -> int:
        first = next(iter(self.inputs.values()))
        return int(first.shape[0]) if first.ndim else 1


def parse_request(
    body: bytes,
    header_length: int | None,
    specs: dict[str, TensorSpec],
    alt_specs: dict[str, TensorSpec] | None = None,
    max_rows: int | None = None,
) -> InferRequest:
    """Decode and check one request against the model's declared inputs; raises InvalidInput (400).
    A tensor whose declared shape has more than `max_rows` rows is refused before its data is decoded.

    `alt_specs` is a second accepted input set (the text form of a tokenized model), chosen when the
    first input names one of its tensors.
    """
    json_part = body if header_length is None else body[:header_length]
    if header_length is not None and not 0 < header_length <= len(body):
        raise InvalidInput(
            f"Inference-Header-Content-Length {header_length} outside the body ({len(body)} B)"
        )
    try:
        doc = orjson.loads(json_part)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON (or not UTF-8): {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidInput("request body must be a JSON object")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("'inputs' must be a non-empty list of tensors")
    if alt_specs and isinstance(raw_inputs[0], dict) and raw_inputs[0].get("name") in alt_specs:
        specs = alt_specs
    params = doc.get("parameters")
    binary_default = params is not None and bool(
        _object(params, "parameters").get("binary_data_output", False)
    )
    req_id = doc.get("id")
    if req_id is not None and type(req_id) is not str:
        raise InvalidInput("'id' must be a string")

    offset = header_length or 0
    inputs: dict[str, Tensor] = {}
    for raw in raw_inputs:
        if type(raw) is not dict:
            raise InvalidInput("each input must be a JSON object")
        name = raw.get("name")
        if type(name) is not str:
            raise InvalidInput("each input needs a string 'name'")
        spec = specs.get(name)
        if spec is None:
            raise InvalidInput(f"input '{name}': the model has no such input (it takes {sorted(specs)})")
        if name in inputs:
            raise InvalidInput(f"input '{name}': given twice")
        tensor, used = _decode_tensor(raw, spec, body, offset, max_rows)
        offset += used
        inputs[name] = tensor
    if len(inputs) != len(specs):  # every name was checked against specs, and none came twice
        raise InvalidInput(f"missing input(s) {sorted(set(specs) - set(inputs))}")
    if header_length is not None and offset != len(body):
        raise InvalidInput(f"binary data: {len(body) - offset} B left over after the last tensor")
    _check_batch_dims(inputs)
    outputs = doc.get("outputs")
    return InferRequest(
        inputs, None if outputs is None else _outputs(outputs, binary_default), binary_default, req_id
    )


def _object(v: Any, what: str) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise InvalidInput(f"'{what}' must be a JSON object")
    return v


def _outputs(raw: Any, binary_default: bool) -> list[RequestedOutput] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InvalidInput("'outputs' must be a list")
    out = []
    seen: set[str] = set()
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput("each requested output needs a string 'name'")
        name = item["name"]
        if name in seen:  # each copy would be encoded again: a small request, a huge response
            raise InvalidInput(f"output {name!r}: requested twice")
        seen.add(name)
        p = _object(item.get("parameters"), f"outputs.{name}.parameters")
        out.append(RequestedOutput(name, bool(p.get("binary_data", binary_default))))
    return out


def _decode_tensor(
    raw: dict[str, Any], spec: TensorSpec, body: bytes, offset: int, max_rows: int | None
) -> tuple[Tensor, int]:
    name = spec.name
    datatype = raw.get("datatype")
    if datatype != spec.datatype:
        raise InvalidInput(f"input '{name}': datatype {datatype!r}, the model expects {spec.datatype}")
    shape = raw.get("shape")
    if type(shape) is not list:
        raise InvalidInput(f"input '{name}': 'shape' must be a list of non-negative integers")
    for d in shape:
        if type(d) is not int or d < 0:
            raise InvalidInput(f"input '{name}': 'shape' must be a list of non-negative integers")
    declared = spec.shape
    fits = len(shape) == len(declared)
    if fits:
        for i, want in enumerate(declared):
            if want != shape[i] and want != -1:
                fits = False
                break
    if not fits:
        raise InvalidInput(f"input '{name}': shape {shape}, the model expects {list(declared)} (-1 = any)")
    if max_rows is not None and shape and shape[0] > max_rows:  # as Triton; before any data is decoded
        raise InvalidInput(
            f"input '{name}': {shape[0]} rows in one request, over "
            f"runtime.batching.maxBatchSize={max_rows}: split it"
        )
    count = 1
    for d in shape:  # only now: its length is the model's rank, so no client-sized product
        count *= d
    params = raw.get("parameters")
    size = None if params is None else _object(params, f"inputs.{name}.parameters").get("binary_data_size")
    if size is not None:
        if type(size) is not int or size < 0 or offset + size > len(body):
            raise InvalidInput(f"input '{name}': binary_data_size {size!r} does not fit the body")
        return _from_binary(name, datatype, shape, count, body[offset : offset + size]), size
    data = raw.get("data", _MISSING)
    if data is _MISSING:
        raise InvalidInput(f"input '{name}': no 'data' and no binary_data_size")
    return _from_json(name, datatype, shape, count, data), 0


def _from_json(name: str, datatype: str, shape: list[int], count: int, data: Any) -> Tensor:
    if type(data) is not list:
        data = [data]
    check = _LEAF_CHECK[datatype]
    if (check is _NUMBERS or check is _INTEGERS) and data and type(data[0]) is not list:
        try:  # flat numbers, the common case: _check_json_types inline
            total = sum(data)
        except TypeError:
            _refuse(data, frozenset({int, float, bool}), name, datatype)
        if check is _INTEGERS and type(total) is not int:
            _refuse(data, frozenset({int, bool}), name, datatype)
    else:
        _check_json_types(data, check, max(1, len(shape)), name, datatype)
    if datatype == "BYTES":
        flat = _flatten(data)
        arr = np.empty(len(flat), dtype=object)
        arr[:] = [s.encode("utf-8") for s in flat]
    else:
        try:  # straight into the model's dtype: no int64/float64 array first, and no silent wrap
            arr = np.array(data, dtype=OIP_TO_NUMPY[datatype])
        except OverflowError:
            raise InvalidInput(f"input '{name}': a value is out of range for {datatype}") from None
        except ValueError:
            raise InvalidInput(f"input '{name}': data is ragged or not numeric") from None
    if arr.size != count:
        raise InvalidInput(f"input '{name}': shape {shape} needs {count} values, data has {arr.size}")
    return arr.reshape(shape)


def _check_json_types(
    data: list[Any], check: str | frozenset[type], depth: int, name: str, datatype: str
) -> None:
    """Every leaf is of a type `datatype` takes, and lists nest at most `depth` deep (the declared rank)."""
    if data and type(data[0]) is list:
        if depth <= 1:
            raise InvalidInput(f"input '{name}': data nests deeper than the tensor's rank")
        for sub in data:
            if type(sub) is not list:
                raise InvalidInput(f"input '{name}': data is ragged (lists and values at one level)")
            _check_json_types(sub, check, depth - 1, name, datatype)
        return
    if isinstance(check, frozenset):
        if not set(map(type, data)) <= check:
            _refuse(data, check, name, datatype)
        return
    try:
        total = sum(data)
    except TypeError:
        _refuse(data, frozenset({int, float, bool}), name, datatype)
    if check == _INTEGERS and type(total) is not int:
        _refuse(data, frozenset({int, bool}), name, datatype)


def _refuse(data: list[Any], allowed: frozenset[type], name: str, datatype: str) -> NoReturn:
    bad = sorted({type(x).__name__ for x in data if type(x) not in allowed})
    raise InvalidInput(f"input '{name}': {datatype} data holds {', '.join(bad)} values")


def _flatten(data: list[Any]) -> list[Any]:
    if not data or not isinstance(data[0], list):  # _check_json_types: no level mixes lists and values
        return data
    out: list[Any] = []
    for x in data:
        out.extend(_flatten(x))
    return out


def _from_binary(name: str, datatype: str, shape: list[int], count: int, chunk: bytes) -> Tensor:
    if datatype == "BYTES":
        if count * 4 > len(chunk):  # every element has a 4-byte length prefix: refused before the loop
            raise InvalidInput(f"input '{name}': {len(chunk)} B cannot hold {count} length-prefixed strings")
        items: list[bytes] = []
        pos = 0
        unpack = _LENGTH.unpack_from
        for _ in range(count):
            if pos + 4 > len(chunk):
                raise InvalidInput(f"input '{name}': truncated BYTES length prefix")
            (n,) = unpack(chunk, pos)
            items.append(chunk[pos + 4 : pos + 4 + n])
            pos += 4 + n
        if pos != len(chunk):
            raise InvalidInput(f"input '{name}': {len(chunk)} B are not {count} length-prefixed strings")
        arr = np.empty(count, dtype=object)
        arr[:] = items
        return arr.reshape(shape)
    if len(chunk) != count * element_size(datatype):
        raise InvalidInput(
            f"input '{name}': shape {shape} of {datatype} needs {count * element_size(datatype)} B, "
            f"got {len(chunk)}"
        )
    return np.frombuffer(chunk, dtype=OIP_TO_NUMPY[datatype]).reshape(shape)


def _check_batch_dims(inputs: dict[str, Tensor]) -> None:
    first: int | None = None
    for t in inputs.values():
        shape = t.shape
        if not shape:
            break
        if first is None:
            first = shape[0]
        elif shape[0] != first:
            break
    else:
        return
    rows = {n: (t.shape[0] if t.ndim else None) for n, t in inputs.items()}
    if len(set(rows.values())) > 1:
        raise InvalidInput(f"inputs disagree on the batch (first) dimension: {rows}")
    raise InvalidInput("inputs need a batch (first) dimension")


def encode_response(
    model: str,
    version: str,
    request: InferRequest,
    outputs: dict[str, Tensor],
    max_bytes: int | None = None,
) -> tuple[bytes, int | None]:
    """Body bytes and, when any tensor went binary, the JSON header's length. A response over
    `max_bytes` is refused (400): before encoding when a floor of its size already is, else after."""
    wanted: Any = request.outputs
    if wanted is None:  # every output, each binary or not as the request's default says
        binary_default = request.binary_default
        wanted = [(n, binary_default) for n in outputs]
    else:
        wanted = [(o.name, o.binary) for o in wanted]
    entries: list[dict[str, Any]] = []
    doc: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": entries}
    if request.id is not None:
        doc["id"] = request.id
    blobs: list[bytes] = []
    floor = 0
    for name, binary in wanted:
        arr = outputs.get(name)
        if arr is None:
            raise InvalidInput(f"output '{name}': the model has no such output (it has {sorted(outputs)})")
        if max_bytes is not None:  # refused before this output is encoded, if it cannot fit
            floor += arr.nbytes if binary else 2 * arr.size  # JSON: a digit and a comma at least
            if floor > max_bytes:
                raise _too_large(floor, max_bytes, "at least ")
        datatype = oip_of(arr.dtype)
        entry: dict[str, Any] = {"name": name, "shape": list(arr.shape), "datatype": datatype}
        if binary:
            blob = _to_binary(arr, datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif datatype == "BYTES":
            entry["data"] = [_text(x) for x in arr.ravel()]
        else:
            entry["data"] = np.ascontiguousarray(arr).ravel()
        entries.append(entry)
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        if max_bytes is not None and len(header) > max_bytes:
            raise _too_large(len(header), max_bytes, "")
        return header, None
    body = b"".join([header, *blobs])
    if max_bytes is not None and len(body) > max_bytes:
        raise _too_large(len(body), max_bytes, "")
    return body, len(header)


def _too_large(size: int, limit: int, qualifier: str) -> InvalidInput:
    return InvalidInput(
        f"the response would be {qualifier}{size} B, over server.maxResponseBytes={limit}: "
        "ask for fewer rows or outputs, or for binary_data"
    )


def _to_binary(arr: Tensor, datatype: str) -> bytes:
    if datatype != "BYTES":
        return np.ascontiguousarray(arr).tobytes()
    parts = []
    for x in arr.ravel():
        b = x if isinstance(x, bytes) else str(x).encode("utf-8")
        parts.append(struct.pack("<I", len(b)) + b)
    return b"".join(parts)


def _text(x: Any) -> str:
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)
