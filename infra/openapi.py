"""Write the OpenAPI document of every cloud function to openapi.json (committed; a test fails when it is stale).

    python -m infra.openapi [--check]

The document is the one the local server serves at /openapi.json, with what generated clients
(swift-openapi-generator, openapi-generator) need to be right: the bearer security scheme of the authenticated
endpoints, the required Idempotency-Key of generate-video, and the one error body (``Error``) on every error
response in place of FastAPI's default 422 validation shape (validation errors answer 400 ``invalid_field``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fastapi.routing import APIRoute

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "openapi.json"
_BEARER = {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
#: Headers the server requires although the endpoint reads them as optional (to answer 400 with our error shape).
_REQUIRED_HEADERS = {"generate_video": "Idempotency-Key"}
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


def document() -> dict[str, Any]:
    """The OpenAPI document of the routed functions (the media routes of the local server are not in it)."""
    from infra.server import FUNCTION_ROUTERS
    from shared.web import make_app

    app = make_app(*FUNCTION_ROUTERS, title="i2v")
    app.description = (
        "Image-to-video generation billed in credits. Authenticated endpoints take a Supabase access token "
        "(`Authorization: Bearer ...`); generate-video requires an `Idempotency-Key` header."
    )
    doc = app.openapi()
    doc["servers"] = [{"url": "http://127.0.0.1:8000", "description": "i2v serve (local stack)"}]
    components = doc.setdefault("components", {})
    components["securitySchemes"] = _BEARER
    components["schemas"]["Error"] = _ERROR
    for name in ("HTTPValidationError", "ValidationError"):
        components["schemas"].pop(name, None)
    authed = {
        (method.lower(), route.path)
        for router in FUNCTION_ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute) and _takes_bearer(doc, route)
        for method in route.methods or ()
    }
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if (method, path) in authed:
                operation["security"] = [{"bearerAuth": []}]
                operation["parameters"] = [
                    p for p in operation.get("parameters", []) if p.get("name") != "authorization"
                ]
                if not operation["parameters"]:
                    del operation["parameters"]
                operation["responses"].setdefault("401", {"description": "Unauthorized"})
            _shape_errors(operation)
            for param in operation.get("parameters", []):
                if param["name"] == _REQUIRED_HEADERS.get(operation["operationId"]):
                    param.update(required=True, schema={"type": "string", "minLength": 1, "maxLength": 257})
    return doc


def _shape_errors(operation: dict[str, Any]) -> None:
    """Every error response carries the Error body; FastAPI's automatic 422 becomes our 400 invalid_field."""
    responses = operation["responses"]
    default_422 = responses.get("422", {}).get("description") == "Validation Error"
    if default_422:
        del responses["422"]
    if default_422 or operation.get("requestBody") or operation.get("parameters"):
        responses.setdefault("400", {"description": "Bad Request (invalid_field names the field)"})
    for status, response in responses.items():
        if int(status) >= 400:
            response["content"] = _ERROR_REF
    operation["responses"] = dict(sorted(responses.items()))


def _takes_bearer(doc: dict[str, Any], route: APIRoute) -> bool:
    operations = doc["paths"].get(route.path, {})
    return any(
        p.get("name") == "authorization" and p.get("in") == "header"
        for op in operations.values()
        for p in op.get("parameters", [])
    )


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
