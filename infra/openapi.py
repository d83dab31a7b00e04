"""Write the OpenAPI document of every cloud function to openapi.json (committed; a test fails when it is stale).

    python -m infra.openapi [--check]

The document is the one the local server serves at /openapi.json, plus the bearer security scheme the
authenticated endpoints use, so generated clients (swift-openapi-generator, openapi-generator) get auth right.
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
    doc.setdefault("components", {})["securitySchemes"] = _BEARER
    authed = {
        (method.lower(), route.path)
        for router in FUNCTION_ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute) and _takes_bearer(doc, route)
        for method in route.methods
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
    return doc


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
