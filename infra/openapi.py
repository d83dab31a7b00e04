"""Write the OpenAPI document of every cloud function to openapi.json (committed; a test fails when it is stale).

    python -m infra.openapi [--check]

The document is built from the functions' ``Endpoint`` declarations (shared.web) and their pydantic models, and
is the one the local server serves at /openapi.json. It carries what generated clients (swift-openapi-generator,
openapi-generator) need to be right: operationIds named after the functions, the bearer security scheme of the
authenticated endpoints, the Idempotency-Key header, and the one error body (``Error``) on every error response.
"""

from __future__ import annotations

import argparse
import json
import sys
from http import HTTPStatus
from pathlib import Path
from typing import Any

from shared.web import Endpoint, Param, load_model

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "openapi.json"
REF = "#/components/schemas/{model}"
_BEARER = {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {
                    "type": "string",
                    "description": "stable snake_case code, e.g. insufficient_credits",
                },
                "message": {"type": "string"},
                "details": {"type": "object", "additionalProperties": True},
                "request_id": {"type": "string"},
            },
        }
    },
}
_ERROR_REF = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_IDEMPOTENCY_KEY = {"type": "string", "minLength": 1, "maxLength": 257}
DESCRIPTION = (
    "Image-to-video generation billed in credits. Authenticated endpoints take a Supabase access token "
    "(`Authorization: Bearer ...`); generate-video requires an `Idempotency-Key` header."
)


def document() -> dict[str, Any]:
    """The OpenAPI document of the routed functions (the media routes of the local server are not in it)."""
    from pydantic.json_schema import JsonSchemaMode, models_json_schema

    from functions import endpoints

    listed = endpoints()

    models = sorted(
        {ref for e in listed for ref in (e.body, e.response) if ref}, key=lambda r: r.split(":")[1]
    )
    modes: dict[str, JsonSchemaMode] = {e.body: "validation" for e in listed if e.body}
    modes |= {e.response: "serialization" for e in listed if e.response}
    _, schemas = models_json_schema([(load_model(ref), modes[ref]) for ref in models], ref_template=REF)
    paths: dict[str, Any] = {}
    for endpoint in listed:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint)
    return {
        "openapi": "3.1.0",
        "info": {"title": "i2v", "description": DESCRIPTION, "version": "0.1.0"},
        "paths": paths,
        "components": {
            "schemas": {**dict(sorted(schemas.get("$defs", {}).items())), "Error": _ERROR},
            "securitySchemes": _BEARER,
        },
        "servers": [{"url": "http://127.0.0.1:8000", "description": "i2v serve (local stack)"}],
    }


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    doc = (endpoint.run.__doc__ or "").strip()
    operation: dict[str, Any] = {
        "tags": list(endpoint.tags),
        "summary": endpoint.name.replace("_", " ").title(),
        "description": doc,
        "operationId": endpoint.name,
    }
    parameters = [_parameter(p) for p in endpoint.params]
    if endpoint.idempotency_key:
        parameters.insert(
            0,
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": endpoint.idempotency_key == "required",
                "schema": _IDEMPOTENCY_KEY,
            },
        )
    if parameters:
        operation["parameters"] = parameters
    if endpoint.body:
        name = endpoint.body.split(":")[1]
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=name)}}},
        }
    success: dict[str, Any] = {"description": "Successful Response"}
    if endpoint.response:
        name = endpoint.response.split(":")[1]
        success["content"] = {"application/json": {"schema": {"$ref": REF.format(model=name)}}}
    else:
        success["content"] = {"application/json": {"schema": {"type": "object"}}}
    if endpoint.response_headers:
        success["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in endpoint.response_headers
        }
    statuses = set(endpoint.errors) | {400}  # any request can be malformed (a NUL in a query parameter, ...)
    if endpoint.auth:
        statuses.add(401)
    responses: dict[str, Any] = {str(endpoint.status): success}
    for status in sorted(statuses):
        phrase = "Bad Request (invalid_field names the field)" if status == 400 else HTTPStatus(status).phrase
        responses[str(status)] = {"description": phrase, "content": _ERROR_REF}
    operation["responses"] = responses
    if endpoint.auth:
        operation["security"] = [{"bearerAuth": []}]
    return operation


def _parameter(param: Param) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "str": {"type": "string"},
        "int": {"type": "integer"},
        "uuid": {"type": "string", "format": "uuid"},
        "bool": {"type": "boolean"},
    }[param.kind]
    if param.minimum is not None:
        schema["minimum"] = param.minimum
    if param.maximum is not None:
        schema["maximum"] = param.maximum
    if param.default is not None:
        schema["default"] = param.default
    spec: dict[str, Any] = {"name": param.name, "in": "query", "required": param.required, "schema": schema}
    if param.description:
        spec["description"] = param.description
    return spec


def render() -> str:
    """The document as written to openapi.json (stable key order, two-space indent, final newline)."""
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Write openapi.json, or with --check exit 1 when it differs from what the code generates."""
    parser = argparse.ArgumentParser(description="Generate openapi.json.")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print("openapi.json is stale: run `make openapi`", file=sys.stderr)
            raise SystemExit(1)
        return
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(ROOT)} ({len(text)} bytes, {len(document()['paths'])} paths)")


if __name__ == "__main__":
    main()
