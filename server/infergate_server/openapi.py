"""The server's OpenAPI 3.0 document, written out (no generator): what /openapi.json serves."""

from __future__ import annotations

from typing import Any

_DATATYPES = [
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _resp(description: str, schema: str | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {"description": description}
    if schema is not None:
        r["content"] = {"application/json": {"schema": _ref(schema)}}
    return r


_ERR = {
    "400": _resp("Invalid request (names the tensor or field)", "Error"),
    "404": _resp("No such model or version", "Error"),
    "503": _resp("Model not ready", "Error"),
}


_SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "Live": {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}},
    "Readiness": {
        "type": "object",
        "required": ["ready", "phase", "reason"],
        "properties": {
            "ready": {"type": "boolean"},
            "phase": {"type": "string"},
            "reason": {"type": "string"},
            "digest": {"type": "string", "nullable": True},
            "goldenAgeSeconds": {"type": "number", "nullable": True},
            "golden": {"type": "object"},
        },
    },
    "ServerMetadata": {
        "type": "object",
        "required": ["name", "version", "extensions"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
    },
    "TensorMetadata": {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
        },
    },
    "ModelMetadata": {
        "type": "object",
        "required": ["name", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": _ref("TensorMetadata")},
            "outputs": {"type": "array", "items": _ref("TensorMetadata")},
            "parameters": {"type": "object"},
        },
    },
    "ModelReady": {
        "type": "object",
        "required": ["name", "ready"],
        "properties": {
            "name": {"type": "string"},
            "ready": {"type": "boolean"},
            "reason": {"type": "string"},
        },
    },
    "Golden": {
        "type": "object",
        "required": ["name", "ready", "phase"],
        "properties": {
            "name": {"type": "string"},
            "ready": {"type": "boolean"},
            "phase": {"type": "string"},
            "result": {"type": "string", "enum": ["Passed", "Failed", "Inconclusive", "Errored"]},
            "passed": {"type": "integer"},
            "failed": {"type": "integer"},
            "maxAbsError": {"type": "number", "nullable": True},
            "maxRelError": {"type": "number", "nullable": True},
            "cases": {"type": "array", "items": {"type": "object"}},
        },
    },
    "RequestInput": {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string", "enum": _DATATYPES},
            "parameters": {"type": "object"},
            "data": {"type": "array"},
        },
    },
    "RequestOutput": {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
    },
    "InferenceRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {"type": "array", "items": _ref("RequestInput")},
            "outputs": {"type": "array", "items": _ref("RequestOutput")},
        },
    },
    "ResponseOutput": {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "datatype": {"type": "string", "enum": _DATATYPES},
            "parameters": {"type": "object"},
            "data": {"type": "array"},
        },
    },
    "InferenceResponse": {
        "type": "object",
        "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": _ref("ResponseOutput")},
        },
    },
}


def _get(
    summary: str, ok: dict[str, Any], params: list[dict[str, Any]], errors: tuple[str, ...]
) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": params,
            "responses": {"200": ok, **{e: _ERR[e] for e in errors}},
        }
    }


def _infer(params: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "post": {
            "summary": "Run inference (Open Inference Protocol v2)",
            "parameters": params,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("InferenceRequest")}},
            },
            "responses": {
                "200": _resp("Outputs", "InferenceResponse"),
                **_ERR,
                "413": _resp("Body larger than server.maxBodyBytes", "Error"),
                "415": _resp("Unsupported Content-Type or Content-Encoding", "Error"),
                "429": _resp("Queue full; retry after Retry-After seconds", "Error"),
                "504": _resp("No result within requestTimeoutSeconds", "Error"),
            },
        }
    }


def _schemas(inputs: list[str], outputs: list[str]) -> dict[str, Any]:
    schemas = {k: dict(v) for k, v in _SCHEMAS.items()}
    for schema, names in (("RequestInput", inputs), ("RequestOutput", outputs)):
        if names:
            props = dict(schemas[schema]["properties"])
            props["name"] = {"type": "string", "enum": names}
            schemas[schema]["properties"] = props
    return schemas


def _path_param(name: str, value: str) -> dict[str, Any]:
    # This server serves exactly one model: saying so lets generated requests reach the model.
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "enum": [value]}}


def openapi_document(
    version: str, model_name: str, model_version: str, inputs: list[str], outputs: list[str]
) -> dict[str, Any]:
    _MODEL = _path_param("model_name", model_name)  # noqa: N806
    mv = [_MODEL, _path_param("version", model_version)]
    ready = _resp("Ready", "Readiness")
    not_ready = _resp("Not ready", "Readiness")
    return {
        "openapi": "3.0.3",
        "info": {"title": "infergate model server", "version": version},
        "paths": {
            "/healthz": _get("Liveness (never touches the model)", _resp("Alive", "Live"), [], ()),
            "/v2/health/live": _get("Liveness", _resp("Alive", "Live"), [], ()),
            "/readyz": {"get": {"summary": "Readiness", "responses": {"200": ready, "503": not_ready}}},
            "/v2/health/ready": {
                "get": {"summary": "Readiness", "responses": {"200": ready, "503": not_ready}}
            },
            "/v2": _get("Server metadata", _resp("Metadata", "ServerMetadata"), [], ()),
            "/v2/models/{model_name}": _get(
                "Model metadata", _resp("Metadata", "ModelMetadata"), [_MODEL], ("404",)
            ),
            "/v2/models/{model_name}/versions/{version}": _get(
                "Model metadata", _resp("Metadata", "ModelMetadata"), mv, ("404",)
            ),
            "/v2/models/{model_name}/ready": _get(
                "Model readiness", _resp("Ready", "ModelReady"), [_MODEL], ("404", "503")
            ),
            "/v2/models/{model_name}/versions/{version}/ready": _get(
                "Model readiness", _resp("Ready", "ModelReady"), mv, ("404", "503")
            ),
            "/v2/models/{model_name}/golden": _get(
                "Golden results: passed, failed, max abs/rel error per case",
                _resp("Golden", "Golden"),
                [_MODEL],
                ("404",),
            ),
            "/v2/models/{model_name}/infer": _infer([_MODEL]),
            "/v2/models/{model_name}/versions/{version}/infer": _infer(mv),
        },
        "components": {"schemas": _schemas(inputs, outputs)},
    }
