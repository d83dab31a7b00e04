"""Install the Lambda's Python dependencies into build/lambda/ without Docker (two layers for serverless.yml).

    python -m infra.lambda_build [--out build/lambda] [--force]

``deps``    = the project's dependencies from pyproject.toml minus the command-line-only ones (typer, rich)
              and the two below, plus the ``tracing`` extra (OpenTelemetry, imported only when
              OTEL_EXPORTER_OTLP_ENDPOINT is set), for every function;
``billing`` = stripe and app-store-server-library (and what they need beyond ``deps``: requests, pyOpenSSL,
              asn1, cattrs), attached only to the Stripe and App Store purchase functions;
``media``   = PyAV (thumbnails of mirrored videos), attached only to mirror-video and reconcile.
The local-only extras (pgserver, uvicorn, OpenCV, numpy) are never installed: no Lambda imports them. Later layers
are resolved with the versions the ``deps`` layer pinned, and what ``deps`` already holds is left out of them.

pip installs binary wheels only (``--only-binary=:all:``) for CPython 3.12 on manylinux aarch64 (glibc ≤ 2.34,
what Amazon Linux 2023 has), so nothing is compiled and the result does not depend on this machine. A stamp
file keeps a second run with the same requirements instant. When a ``python3.12`` is on PATH (or given in
LAMBDA_PYTHON) the layers are byte-compiled with it (unchecked-hash .pyc, valid in a read-only /opt).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON_VERSION = "3.12"
GLIBC = ("2_34", "2_28", "2_27", "2_26", "2_24", "2_17")
PLATFORMS = [f"manylinux_{g}_aarch64" for g in GLIBC] + ["manylinux2014_aarch64"]
CLI_ONLY = {"typer", "rich"}
BILLING = {"stripe", "app-store-server-library"}
MEDIA = {"av"}
_JUNK_DIRS = ("__pycache__", "bin")


def _name(requirement: str) -> str:
    return re.split(r"[\[=<>!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def requirement_sets(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, list[str]]:
    """The pinned requirements of each layer, read from pyproject.toml."""
    project = tomllib.loads(pyproject.read_text())["project"]
    base = [r for r in project["dependencies"] if _name(r) not in CLI_ONLY]
    base += project["optional-dependencies"]["tracing"]
    local = project["optional-dependencies"]["local"]
    return {
        "deps": [r for r in base if _name(r) not in BILLING],
        "billing": [r for r in base if _name(r) in BILLING],
        "media": [r for r in local if _name(r) in MEDIA],
    }


def installed(site: Path) -> dict[str, str]:
    """Distribution name -> version of what is installed in ``site``."""
    found = {}
    for info in site.glob("*.dist-info"):
        name, _, version = info.name[: -len(".dist-info")].partition("-")
        found[_name(name)] = version
    return found


def _drop_shared(site: Path, base: dict[str, str]) -> None:
    """Remove from ``site`` every distribution that ``base`` already holds in the same version."""
    for info in list(site.glob("*.dist-info")):
        name, _, version = info.name[: -len(".dist-info")].partition("-")
        if base.get(_name(name)) != version:
            continue
        for line in (info / "RECORD").read_text().splitlines():
            path = site / line.split(",", 1)[0]
            if path.is_file():
                path.unlink()
        shutil.rmtree(info, ignore_errors=True)
    for directory in sorted((p for p in site.rglob("*") if p.is_dir()), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()


def _stamp(requirements: list[str]) -> str:
    return hashlib.sha256(json.dumps([requirements, PLATFORMS, PYTHON_VERSION]).encode()).hexdigest()


def install_layer(
    name: str, requirements: list[str], out: Path, *, base: dict[str, str] | None = None, force: bool = False
) -> Path:
    """pip-install one layer into ``out/<name>/python`` (skipped when its stamp matches).

    ``base`` (name -> version, the deps layer) constrains shared dependencies and is left out of this layer.
    """
    layer = out / name
    stamp = layer / ".requirements.sha256"
    key = _stamp([*requirements, *sorted(f"{k}=={v}" for k, v in (base or {}).items())])
    if not force and stamp.exists() and stamp.read_text() == key:
        print(f"{name}: up to date ({layer})")
        return layer
    shutil.rmtree(layer, ignore_errors=True)
    target = layer / "python"
    target.mkdir(parents=True)
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    constraints = layer / "constraints.txt"
    constraints.write_text("".join(f"{k}=={v}\n" for k, v in sorted((base or {}).items())))
    cmd = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
        "--target", str(target), "--implementation", "cp", "--python-version", PYTHON_VERSION,
        "--only-binary=:all:", *platforms, "--constraint", str(constraints), *requirements,
    ]  # fmt: skip
    print(f"{name}: pip install {' '.join(requirements)}")
    subprocess.run(cmd, check=True)
    constraints.unlink()
    if base:
        _drop_shared(target, base)
    _prune(target)
    _compile(target)
    stamp.write_text(key)
    return layer


def _prune(target: Path) -> None:
    """Drop what a Lambda never runs: console scripts and bytecode compiled for another Python."""
    for junk in _JUNK_DIRS:
        for path in sorted(target.rglob(junk), reverse=True):
            if path.is_dir() and (junk != "bin" or path.parent == target):
                shutil.rmtree(path)


def lambda_python() -> str | None:
    """A CPython 3.12 interpreter (LAMBDA_PYTHON, python3.12 on PATH, or pyenv's), or None."""
    candidates = [os.environ.get("LAMBDA_PYTHON"), shutil.which(f"python{PYTHON_VERSION}")]
    candidates += [
        str(p) for p in sorted(Path.home().glob(f".pyenv/versions/{PYTHON_VERSION}.*/bin/python3"))
    ]
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == PYTHON_VERSION:
            return candidate
    return None


def compile_tree(paths: list[Path], *, checked: bool) -> bool:
    """Byte-compile for CPython 3.12 (hash-based .pyc: valid in Lambda's read-only directories); False without one.

    ``checked`` pyc files are re-validated against the source's hash at import (our own code, which changes);
    unchecked ones are trusted (installed layers, which never change after the build).
    """
    python = lambda_python()
    if python is None:
        print(f"  no python{PYTHON_VERSION} here: shipping sources only (Lambda compiles them at import)")
        return False
    mode = "checked-hash" if checked else "unchecked-hash"
    cmd = [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", mode, *map(str, paths)]
    subprocess.run(cmd, check=True)
    return True


def _compile(target: Path) -> None:
    compile_tree([target], checked=False)


def size_of(path: Path) -> int:
    """Bytes of every file under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> None:
    """Build both layers and print their sizes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "lambda")
    parser.add_argument("--force", action="store_true", help="reinstall even when up to date")
    args = parser.parse_args(argv)
    base: dict[str, str] | None = None
    for name, requirements in requirement_sets().items():
        layer = install_layer(name, requirements, args.out, base=base, force=args.force)
        print(f"  {name}: {size_of(layer) / 1e6:.1f} MB unzipped")
        base = base or installed(layer / "python")
    if compile_tree([ROOT / "functions", ROOT / "shared"], checked=True):
        print("  functions/ and shared/ byte-compiled for CPython 3.12")


if __name__ == "__main__":
    main()
