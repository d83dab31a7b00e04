"""The offline deployment check (``make check-deploy``): package serverless.yml, lint the template, weigh the zips.

    python -m infra.check_deploy [--skip-package]

1. ``infra.lambda_build`` installs the layers (build/lambda/{deps,billing,media}).
2. ``npx osls package --stage ci`` writes .serverless/: the CloudFormation templates, the code zip and one zip
   per layer. osls asks CloudFormation (DescribeStacks) whether an unchanged layer can be reused; offline, that
   call goes to a local moto server, which truthfully answers that the stack does not exist yet (first deploy).
   No other AWS call is made, and no credential is needed: the ones set here are placeholders.
3. cfn-lint checks the generated template.
4. The budgets below are checked, and the code zip is checked to hold functions/ and shared/ only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from infra import lambda_build

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = ROOT / ".serverless"
REPORT = ROOT / "build" / "lambda" / "report.json"
MB = 1024 * 1024

#: The code zip (our functions/ and shared/): small, so a code change uploads and cold-starts fast.
CODE_ZIP_BUDGET = 1 * MB
#: Each function's code plus its layers, unzipped. Lambda refuses more than 250 MiB; keep a margin.
UNZIPPED_BUDGET = 230 * MB
#: Each layer zip (what one deploy uploads when the dependencies change).
LAYER_ZIP_BUDGET = 60 * MB
#: Placeholder values that let serverless.yml resolve offline (none is a real endpoint or secret).
PACKAGE_ENV = {
    "DATABASE_URL": "postgresql://i2v@db.invalid:6543/postgres",
    "AWS_ACCESS_KEY_ID": "offline-check",
    "AWS_SECRET_ACCESS_KEY": "offline-check",
    "AWS_REGION": "us-east-1",
    "SLS_TELEMETRY_DISABLED": "1",
}
_ALLOWED_TOP = {"functions", "shared", "certs"}  # certs/: trusted App Store roots, when kept there


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def local_cloudformation() -> Iterator[str]:
    """A moto server on a free loopback port, standing in for CloudFormation; yields its URL."""
    port = _free_port()
    moto = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def package() -> None:
    """Run ``npx osls package`` for the ``ci`` stage into .serverless/."""
    shutil.rmtree(PACKAGE_DIR, ignore_errors=True)
    with local_cloudformation() as endpoint:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(PACKAGE_ENV, AWS_ENDPOINT_URL_CLOUDFORMATION=endpoint)
        cmd = ["npx", "--no-install", "osls", "package", "--stage", "ci", "--region", "us-east-1"]
        subprocess.run(cmd, cwd=ROOT, env=env, check=True)


def template() -> dict[str, Any]:
    """The generated CloudFormation template (the update-stack one, which holds every resource)."""
    data: dict[str, Any] = json.loads((PACKAGE_DIR / "cloudformation-template-update-stack.json").read_text())
    return data


def lint() -> None:
    """cfn-lint the generated template: any error or warning fails the check, except the one listed here."""
    path = PACKAGE_DIR / "cloudformation-template-update-stack.json"
    cfn_lint = str(Path(sys.executable).with_name("cfn-lint"))
    # W3005: osls gives every HTTP API route a DependsOn on its integration as well as a Ref to it; redundant,
    # harmless, and not ours to change.
    subprocess.run([cfn_lint, "--ignore-checks", "W3005", "--", str(path)], check=True)


def zip_sizes(path: Path) -> tuple[int, int]:
    """(zipped, unzipped) bytes of one zip."""
    with zipfile.ZipFile(path) as archive:
        return path.stat().st_size, sum(info.file_size for info in archive.infolist())


def code_zip_problems(path: Path) -> list[str]:
    """Entries of the code zip that do not belong in it (tests, tooling, local-only code, bytecode)."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    problems = [n for n in names if n.split("/", 1)[0] not in _ALLOWED_TOP]
    problems += [n for n in names if n.startswith("shared/providers/local/engine/")]
    problems += [n for n in names if n.endswith(".pyc") and not n.endswith(".cpython-312.pyc")]
    for needed in (
        "functions/generate_video.py",
        "shared/web.py",
        "shared/providers/models.json",
        "shared/billing/credit_packs.json",
        "shared/jobs/service.py",
    ):
        if needed not in names:
            problems.append(f"missing {needed}")
    return problems


def _layer_names(resources: dict[str, Any]) -> dict[str, str]:
    """Layer logical id -> layer zip name (DepsLambdaLayer -> deps)."""
    return {
        logical: Path(res["Properties"]["Content"]["S3Key"]).name.removesuffix(".zip")
        for logical, res in resources.items()
        if res["Type"] == "AWS::Lambda::LayerVersion"
    }


def measure() -> dict[str, Any]:
    """Sizes of the code zip, each layer and each function's total, checked against the budgets."""
    resources = template()["Resources"]
    code_zip, code_unzipped = zip_sizes(PACKAGE_DIR / "i2v.zip")
    layers = {name: zip_sizes(PACKAGE_DIR / f"{name}.zip") for name in _layer_names(resources).values()}
    by_id = _layer_names(resources)
    functions: dict[str, int] = {}
    for logical, res in resources.items():
        if res["Type"] != "AWS::Lambda::Function":
            continue
        refs = [by_id[layer["Ref"]] for layer in res["Properties"].get("Layers", [])]
        functions[logical] = code_unzipped + sum(layers[name][1] for name in refs)
    problems = [f"code zip: {p}" for p in code_zip_problems(PACKAGE_DIR / "i2v.zip")]
    if code_zip > CODE_ZIP_BUDGET:
        problems.append(f"code zip is {code_zip} bytes; the budget is {CODE_ZIP_BUDGET}")
    problems += [
        f"layer {name} zip is {size[0]} bytes; the budget is {LAYER_ZIP_BUDGET}"
        for name, size in layers.items()
        if size[0] > LAYER_ZIP_BUDGET
    ]
    problems += [
        f"{fn} unzipped is {size} bytes; the budget is {UNZIPPED_BUDGET}"
        for fn, size in functions.items()
        if size > UNZIPPED_BUDGET
    ]
    return {
        "code_zip_bytes": code_zip,
        "code_unzipped_bytes": code_unzipped,
        "layers": {name: {"zip_bytes": z, "unzipped_bytes": u} for name, (z, u) in layers.items()},
        "function_unzipped_bytes": functions,
        "budgets": {
            "code_zip_bytes": CODE_ZIP_BUDGET,
            "layer_zip_bytes": LAYER_ZIP_BUDGET,
            "function_unzipped_bytes": UNZIPPED_BUDGET,
        },
        "problems": problems,
    }


def main(argv: list[str] | None = None) -> None:
    """Build, package, lint and weigh; exit 1 when a budget or a content rule is broken."""
    parser = argparse.ArgumentParser(description="Offline deployment check.")
    parser.add_argument("--skip-package", action="store_true", help="check the existing .serverless/")
    args = parser.parse_args(argv)
    started = time.monotonic()
    if not args.skip_package:
        lambda_build.main([])
        package()
    lint()
    report = measure()
    report["seconds"] = round(time.monotonic() - started, 1)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"code zip {report['code_zip_bytes'] / 1024:.0f} KiB (budget {CODE_ZIP_BUDGET // 1024} KiB)")
    for name, size in report["layers"].items():
        print(
            f"layer {name}: {size['zip_bytes'] / MB:.1f} MiB zipped, {size['unzipped_bytes'] / MB:.1f} MiB unzipped"
        )
    largest = max(report["function_unzipped_bytes"].items(), key=lambda kv: kv[1])
    print(
        f"largest function: {largest[0]} {largest[1] / MB:.1f} MiB unzipped (budget {UNZIPPED_BUDGET // MB})"
    )
    for problem in report["problems"]:
        print(f"FAIL {problem}", file=sys.stderr)
    if report["problems"]:
        raise SystemExit(1)
    print(f"deploy check passed in {report['seconds']} s")


if __name__ == "__main__":
    main()
