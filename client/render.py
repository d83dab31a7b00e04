"""How the API-client commands print: rich tables for people, ``--json`` for scripts."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from client.api import ApiError, ApiUnreachable


def add_typed_column(table: Table, name: str, values: Iterable[str]) -> None:
    """A column of values people type back (ids, slugs, paths): as wide as its longest value, on one line, while
    the other columns give way. Print such tables with ``crop=False``: on a terminal narrower than the table
    the terminal wraps the line rather than anything being cut."""
    width = max((len(v) for v in values), default=0)
    table.add_column(name, no_wrap=True, min_width=max(width, len(name)))


def print_json(value: Any) -> None:
    """Print a value as indented JSON on stdout (plain, no markup)."""
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def api_error(console: Console, exc: ApiError) -> None:
    """Explain an API error: its message, the field and the allowed values when the API names them."""
    if isinstance(exc, ApiUnreachable):  # the message says it all: what could not be reached, what to check
        console.print(f"[red]{exc.message}[/red]", highlight=False, soft_wrap=True)
        return
    console.print(f"[red]{exc.code}: {exc.message}[/red]", highlight=False)
    if exc.details.get("field"):
        console.print(f"  field: {exc.details['field']}", highlight=False)
    if exc.details.get("allowed"):
        console.print(f"  allowed: {', '.join(map(str, exc.details['allowed']))}", highlight=False)


def models(out: Console, items: list[dict[str, Any]]) -> None:
    """The model catalog as a table."""
    table = Table(title="i2v models (price: credits per video, by settings)")
    add_typed_column(table, "model", (m["slug"] for m in items))
    for column in (
        "credits",
        "available",
        "resolutions",
        "aspect ratios",
        "durations (s)",
        "defaults",
    ):
        table.add_column(column, overflow="fold")
    for m in items:
        price = m.get("price") or {}
        low, high = price.get("min"), price.get("max")
        table.add_row(
            m["slug"],
            "" if low is None else (str(low) if low == high else f"{low}–{high}"),
            "yes" if m["available"] else f"no: {m.get('unavailable_reason') or ''}",
            ", ".join(m["resolutions"]),
            ", ".join(m["aspect_ratios"]),
            ", ".join(map(str, m["durations"])),
            ", ".join(f"{k}={v}" for k, v in m["defaults"].items()),
        )
    out.print(table, crop=False)


def credits(out: Console, body: dict[str, Any]) -> None:
    """The balance and the recent ledger entries."""
    out.print(f"balance: {body['balance']} credits")
    if body.get("entries"):
        table = Table()
        for column in ("when", "delta", "kind", "reason"):
            table.add_column(column, overflow="fold")
        add_typed_column(table, "job", (e.get("job_id") or "" for e in body["entries"]))
        for e in body["entries"]:
            table.add_row(
                e["created_at"][:16].replace("T", " "),
                str(e["delta"]),
                e["kind"],
                e.get("reason") or "",
                e.get("job_id") or "",
            )
        out.print(table, crop=False)


def jobs(out: Console, videos: list[dict[str, Any]], next_cursor: str | None) -> None:
    """A page of jobs (videos and images) as a table."""
    table = Table(title="i2v jobs (newest first)")
    add_typed_column(table, "job", (v["job_id"] for v in videos))
    add_typed_column(table, "status", (v["status"] for v in videos))
    add_typed_column(table, "model", (v.get("model") or "" for v in videos))
    table.add_column("kind", no_wrap=True, min_width=5)
    table.add_column("credits", no_wrap=True, min_width=7)
    table.add_column("created", no_wrap=True, min_width=16)
    table.add_column("prompt", overflow="fold", min_width=12)
    for v in videos:
        prompt = v.get("prompt") or ""
        table.add_row(
            v["job_id"],
            v["status"],
            v.get("model") or "",
            v.get("kind") or "video",
            str(v.get("credits_used", "")),
            (v.get("created_at") or "")[:16].replace("T", " "),
            prompt if len(prompt) <= 40 else prompt[:39] + "…",
        )
    out.print(table, crop=False)
    if next_cursor:
        out.print("more jobs: use --all (or --limit)")


def campaigns(out: Console, items: list[dict[str, Any]]) -> None:
    """Campaigns as a table: id, client, name, budget, spent and what is left."""
    table = Table(title="i2v campaigns (newest first)")
    add_typed_column(table, "campaign", (c["id"] for c in items))
    add_typed_column(table, "client", (c["client_id"] for c in items))
    table.add_column("name", overflow="fold", min_width=8)
    for name in ("budget", "spent", "left"):
        table.add_column(name, no_wrap=True, justify="right")
    table.add_column("archived", no_wrap=True)
    for c in items:
        budget, left = c.get("budget_credits"), c.get("budget_remaining")
        table.add_row(
            c["id"],
            c["client_id"],
            c["name"],
            "-" if budget is None else str(budget),
            str(c["credits_spent"]),
            "-" if left is None else str(left),
            "yes" if c["archived"] else "",
        )
    out.print(table, crop=False)


def job(out: Console, body: dict[str, Any]) -> None:
    """One job's status as aligned lines."""
    for key in (
        "job_id",
        "status",
        "progress",
        "model",
        "credits_used",
        "error_message",
        "video_url",
        "created_at",
    ):
        if body.get(key) is not None:
            out.print(f"{key:>13}: {body[key]}", highlight=False, soft_wrap=True)
