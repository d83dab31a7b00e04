"""Three views of the API agree: serverless.yml's routes, the local server's routes, and openapi.json's paths."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import yaml

from infra import openapi
from infra.server import ENDPOINTS, create_app
from shared.web import Endpoint

ROOT = Path(__file__).resolve().parent.parent
Route = tuple[str, str]


def serverless() -> dict[str, Any]:
    """serverless.yml as data (its ${...} variables stay strings)."""
    data: dict[str, Any] = yaml.safe_load((ROOT / "serverless.yml").read_text())
    return data


def deployed_routes() -> dict[str, set[Route]]:
    """Handler module (functions.x) -> the (METHOD, path) routes its Lambda is given in serverless.yml."""
    routes: dict[str, set[Route]] = {}
    for spec in serverless()["functions"].values():
        module = spec["handler"].removesuffix(".handler").replace("/", ".")
        for event in spec.get("events", []):
            if "httpApi" in event:
                api = event["httpApi"]
                routes.setdefault(module, set()).add((api["method"].upper(), api["path"]))
    return routes


def endpoint_routes(endpoint: Endpoint, *, documented_only: bool = False) -> set[Route]:
    """The (METHOD, path) pairs an endpoint answers on (documented_only: without its aliases)."""
    paths = (endpoint.path,) if documented_only else endpoint.paths
    return {(endpoint.method, path) for path in paths}


def test_every_function_module_is_deployed_once_with_its_own_routes() -> None:
    """Each module in functions/ with an endpoint has one Lambda whose httpApi routes are exactly its endpoint's."""
    modules = sorted(
        f"functions.{p.stem}"
        for p in (ROOT / "functions").glob("*.py")
        if hasattr(importlib.import_module(f"functions.{p.stem}"), "endpoint")
    )
    deployed = deployed_routes()
    assert sorted(deployed) == modules
    for module in modules:
        assert deployed[module] == endpoint_routes(importlib.import_module(module).endpoint), module


def test_serverless_routes_equal_the_local_servers_routes() -> None:
    """The union of serverless.yml's routes is exactly what the local server's app routes to functions."""
    assert set().union(*deployed_routes().values()) == create_app().routes


def test_openapi_paths_equal_the_documented_routes() -> None:
    """openapi.json lists every route the local server serves, except the undocumented /api/health alias."""
    documented = set().union(*(endpoint_routes(e, documented_only=True) for e in ENDPOINTS))
    doc = json.loads((ROOT / "openapi.json").read_text())
    in_doc = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert in_doc == documented
    assert set().union(*deployed_routes().values()) - in_doc == {("GET", "/api/health")}


def test_openapi_json_is_valid_openapi_3_1() -> None:
    """The committed document validates against the OpenAPI 3.1 specification (what client generators read)."""
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation.validators import OpenAPIV31SpecValidator

    validate(json.loads((ROOT / "openapi.json").read_text()), cls=OpenAPIV31SpecValidator)


def test_openapi_json_is_not_stale() -> None:
    """The committed openapi.json is exactly what `python -m infra.openapi` generates now (run `make openapi`)."""
    assert (ROOT / "openapi.json").read_text() == openapi.render()


def test_every_handler_in_serverless_yml_exists() -> None:
    """Each function's handler names a module in functions/ with a callable ``handler``."""
    for name, spec in serverless()["functions"].items():
        module_path, _, attribute = spec["handler"].rpartition(".")
        assert module_path.startswith("functions/"), name
        module = importlib.import_module(module_path.replace("/", "."))
        assert callable(getattr(module, attribute)), name


def test_reconciler_runs_on_a_schedule_without_http() -> None:
    """The reconciler is the one function without an HTTP route, invoked every minute."""
    spec = serverless()["functions"]["reconcile"]
    assert spec["handler"] == "functions/reconcile.handler"
    assert spec["events"] == [{"schedule": "rate(1 minute)"}]


def test_http_functions_fit_the_api_gateway_timeout() -> None:
    """Every HTTP function ends within API Gateway's 30 s (≤ 29 s); fal-webhook within fal's 15 s."""
    config = serverless()
    default = config["provider"]["timeout"]
    for name, spec in config["functions"].items():
        if any("httpApi" in e for e in spec.get("events", [])):
            assert spec.get("timeout", default) <= 29, name
    assert config["functions"]["falWebhook"]["timeout"] <= 15


def test_the_role_may_invoke_exactly_the_mirror_and_webhook_functions() -> None:
    """MIRROR_FUNCTION and WEBHOOK_FUNCTION are mirrorVideo's and deliverWebhooks' deployed names, the only
    functions the role may invoke."""
    config = serverless()
    names = {"mirrorFunction": "mirrorVideo", "webhookFunction": "deliverWebhooks"}
    for custom, function in names.items():
        assert config["custom"][custom] == "${self:service}-${sls:stage}-" + function  # how osls names them
    environment = config["provider"]["environment"]
    assert environment["MIRROR_FUNCTION"] == "${self:custom.mirrorFunction}"
    assert environment["WEBHOOK_FUNCTION"] == "${self:custom.webhookFunction}"
    mirror = config["functions"]["mirrorVideo"]
    assert mirror["handler"] == "functions/mirror_video.handler" and "events" not in mirror
    assert config["functions"]["deliverWebhooks"]["handler"] == "functions/deliver_webhooks.handler"
    invokes = [
        s for s in config["provider"]["iam"]["role"]["statements"] if "lambda:InvokeFunction" in s["Action"]
    ]
    assert len(invokes) == 1
    assert [r["Fn::Join"][1][-1] for r in invokes[0]["Resource"]] == [
        "${self:custom.mirrorFunction}",
        "${self:custom.webhookFunction}",
    ]
