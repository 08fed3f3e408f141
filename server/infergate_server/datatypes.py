"""Open Inference Protocol v2 datatypes and their numpy and ONNX Runtime counterparts."""

from __future__ import annotations

import numpy as np

OIP_TO_NUMPY: dict[str, np.dtype[np.generic]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}

_NUMPY_TO_OIP = {dt: name for name, dt in OIP_TO_NUMPY.items()}

ORT_TO_OIP = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}

FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})
INT_TYPES = frozenset({"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"})


def oip_of(dtype: np.dtype[np.generic]) -> str:
    """The OIP datatype of a numpy dtype; bytes/str arrays count as BYTES."""
    if dtype.kind in ("S", "U", "O"):
        return "BYTES"
    try:
        return _NUMPY_TO_OIP[dtype]
    except KeyError:
        raise ValueError(f"numpy dtype {dtype} has no Open Inference Protocol datatype") from None


def element_size(datatype: str) -> int:
    """Bytes per element in the binary tensor extension (BYTES is length-prefixed, not fixed)."""
    return OIP_TO_NUMPY[datatype].itemsize
