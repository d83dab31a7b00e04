"""API Gateway HTTP API (payload 2.0) events and a Lambda context, shaped as AWS sends them.

See /work/shared/reference/aws-lambda-http.md §1: header names in lower case, repeated query keys joined with
commas in ``queryStringParameters`` (absent without a query string), ``body`` absent without a body, and
``isBase64Encoded`` true when the body is base64 (binary content types; webhook signatures cover the raw bytes).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

API_HOST = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"


@dataclass
class LambdaContext:
    """The attributes of the Python runtime's context object that handlers may read."""

    function_name: str = "i2v-ci-test"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:i2v-ci-test"

    def get_remaining_time_in_millis(self) -> int:
        """Time left before the function's timeout."""
        return 29_000


def http_event(
    method: str,
    path: str,
    *,
    query: str | dict[str, str] = "",
    headers: dict[str, str] | None = None,
    body: bytes | str | dict[str, Any] | None = None,
    base64_body: bool = False,
    cookies: list[str] | None = None,
) -> dict[str, Any]:
    """One HTTP API v2 event for ``method path?query``, as API Gateway hands it to the function."""
    raw_query = urlencode(query) if isinstance(query, dict) else query
    request_id = base64.b64encode(uuid.uuid4().bytes[:10]).decode()
    now = time.time()
    all_headers = {
        "accept": "application/json",
        "host": API_HOST,
        "user-agent": "i2v-tests/1.0",
        "x-amzn-trace-id": f"Root=1-{int(now):x}-{uuid.uuid4().hex[:24]}",
        "x-forwarded-for": "203.0.113.7",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    raw_body: bytes | None = None
    if isinstance(body, dict):
        raw_body = json.dumps(body).encode()
        all_headers["content-type"] = "application/json"
    elif isinstance(body, str):
        raw_body = body.encode()
    elif body is not None:
        raw_body = body
    if raw_body is not None:
        all_headers["content-length"] = str(len(raw_body))
    all_headers.update({k.lower(): v for k, v in (headers or {}).items()})
    route_key = f"{method} {path}"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": all_headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": API_HOST.split(".", 1)[0],
            "domainName": API_HOST,
            "domainPrefix": API_HOST.split(".", 1)[0],
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": all_headers["user-agent"],
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "pathParameters": {},
        "isBase64Encoded": base64_body,
    }
    if raw_query:
        joined: dict[str, str] = {}
        for key, value in parse_qsl(raw_query, keep_blank_values=True):
            joined[key] = f"{joined[key]},{value}" if key in joined else value
        event["queryStringParameters"] = joined
    if cookies:
        event["cookies"] = cookies
    if raw_body is not None:
        event["body"] = base64.b64encode(raw_body).decode() if base64_body else raw_body.decode()
    return event


def json_body(response: dict[str, Any]) -> Any:
    """The JSON body of a proxy response (decoding base64 when the response says so)."""
    body = response["body"]
    raw = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()
    return json.loads(raw)
