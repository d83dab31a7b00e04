"""The ``i2v`` command: the API client commands (``models``, ``credits``, ``jobs``, ``status``, ``upload``,
``generate``, ``download``, ``cancel``, ``bulk``, ``campaigns``, ``mcp``; ``keys`` and ``webhooks`` in
``client/team_cli.py``) and the demo. The operator commands (``serve``,
``db migrate``, ``reconcile``, ``dev-token``, ``credits grant``) live beside the infrastructure they drive, in
``infra/ops.py``."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from client import team_cli
from client.cli_common import DEFAULT_API_URL, ApiUrl, AsJson, Token, api_session, console, out
from infra import ops

app = typer.Typer(
    help="i2v: image-to-video backend, local stack and tools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database commands.", no_args_is_help=True)
credits_app = typer.Typer(help="Your balance (no subcommand, via the API) and operator credit commands.")
campaigns_app = typer.Typer(help="Clients and campaigns: budgets and spend.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(credits_app, name="credits")
app.add_typer(campaigns_app, name="campaigns")
app.add_typer(team_cli.keys_app, name="keys")
app.add_typer(team_cli.webhooks_app, name="webhooks")
ops.register(
    app, db_app, credits_app
)  # operator commands: serve, db migrate, reconcile, dev-token, credits grant


@app.command()
def demo(
    output_dir: Annotated[str, typer.Option(help="Where videos and thumbnails are saved.")] = "downloads",
    duration: Annotated[int, typer.Option(help="Seconds per video.", min=1, max=10)] = 3,
) -> None:
    """Start the local stack, make videos of the sample images through the HTTP API, download them."""
    from client.demo import run_demo

    sys.exit(run_demo(output_dir=output_dir, duration=duration))


@app.command()
def models(api_url: ApiUrl = DEFAULT_API_URL, token: Token = None, as_json: AsJson = False) -> None:
    """List the models with their allowed settings and price."""
    from client import render

    with api_session(api_url, token, need_token=False) as api:
        items = api.list_models()
    render.print_json(items) if as_json else render.models(out, items)


@credits_app.callback(invoke_without_command=True)
def credits_balance(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="Ledger entries to show.", min=1, max=200)] = 10,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Show your balance and recent ledger entries (i2v credits grant is the operator command)."""
    if ctx.invoked_subcommand is not None:
        return
    from client import render

    with api_session(api_url, token) as api:
        body = api.credits(limit=limit)
    render.print_json(body) if as_json else render.credits(out, body)


class JobKind(StrEnum):
    """Which jobs ``i2v jobs`` lists."""

    video = "video"
    image = "image"


@app.command()
def jobs(
    status: Annotated[
        str | None, typer.Option(help="Only this status: pending, processing, completed, ...")
    ] = None,
    kind: Annotated[
        JobKind | None, typer.Option(help="Only videos or only images (both when absent).")
    ] = None,
    campaign: Annotated[
        str | None, typer.Option(help="Only this campaign's jobs (i2v campaigns list).")
    ] = None,
    client: Annotated[
        str | None, typer.Option(help="Only this client's jobs (i2v campaigns clients).")
    ] = None,
    limit: Annotated[int, typer.Option(help="Jobs per page.", min=1, max=200)] = 20,
    all_pages: Annotated[bool, typer.Option("--all", help="Every job, page after page.")] = False,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """List your jobs (videos and images), newest first."""
    from client import render

    kind_name = kind.value if kind else None
    with api_session(api_url, token) as api:
        if all_pages:
            jobs = api.iter_jobs(kind_name, status, campaign_id=campaign, client_id=client)
            items, cursor = list(jobs), None
        else:
            page = api.list_jobs(kind_name, status, limit, campaign_id=campaign, client_id=client)
            items, cursor = page["jobs"], page["next_cursor"]
    if as_json:
        render.print_json({"jobs": items, "next_cursor": cursor})
    else:
        render.jobs(out, items, cursor)


@app.command()
def status(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Show one job's status."""
    from client import render

    with api_session(api_url, token) as api:
        job = api.status(job_id)
    render.print_json(job) if as_json else render.job(out, job)


@app.command()
def cancel(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Cancel a pending or processing job (its credits are refunded)."""
    from client import render

    with api_session(api_url, token) as api:
        job = api.cancel(job_id)
    render.print_json(job) if as_json else render.job(out, job)


@app.command()
def download(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    output_dir: Annotated[Path, typer.Option(help="Where the video is saved.")] = Path("downloads"),
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Download a completed job's video as {job_id}_{model}_{YYYYmmdd_HHMMSS}.mp4 (skipped if present)."""
    from client import render
    from client.media import download_video, video_filename, video_tags

    with api_session(api_url, token) as api:
        job = api.status(job_id)
        if job["status"] != "completed":
            console.print(f"[red]job {job_id} is {job['status']}: there is no video to download[/red]")
            raise typer.Exit(1)
        dest = output_dir / video_filename(job_id, job.get("model") or "video", job.get("created_at"))
        if not dest.exists():
            download_video(api, job["video_url"], dest, video_tags(job_id, None))
    if as_json:
        render.print_json({"job_id": job_id, "path": str(dest), "bytes": dest.stat().st_size})
    else:
        typer.echo(str(dest))


@app.command()
def upload(
    file: Annotated[Path, typer.Argument(help="A JPEG, PNG or WebP image.")],
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Upload an image (by its SHA-256: content already stored is not sent again) and print its image_url."""
    from client import render, single

    try:
        with api_session(api_url, token) as api:
            stored = single.upload(api, file, console)
    except single.InputError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        render.print_json(
            {
                "image_url": stored.image_url,
                "sha256": stored.sha256,
                "size": stored.size,
                "already_uploaded": stored.already_uploaded,
            }
        )
    else:
        typer.echo(stored.image_url)


@app.command()
def generate(
    image: Annotated[
        str | None,
        typer.Argument(help="A local image (uploaded first) or an https URL; omit for prompt only."),
    ] = None,
    prompt: Annotated[str, typer.Option(help="What should happen (camera words for local-motion).")] = "",
    image_id: Annotated[
        str | None, typer.Option(help="An image made earlier (i2v image prints its id) as the start image.")
    ] = None,
    video_id: Annotated[
        str | None,
        typer.Option(help="A video made earlier (its job id): continue the shot from its last frame."),
    ] = None,
    model: Annotated[str, typer.Option(help="Model slug (i2v models lists them).")] = "local-motion",
    resolution: Annotated[str | None, typer.Option(help="e.g. 480p, 720p (model default if unset).")] = None,
    aspect_ratio: Annotated[str | None, typer.Option(help="e.g. 16:9, 9:16, 1:1.")] = None,
    duration: Annotated[int | None, typer.Option(help="Seconds.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job until it ends.")] = False,
    download: Annotated[bool, typer.Option(help="Wait, then save the video (implies --wait).")] = False,
    output_dir: Annotated[Path, typer.Option(help="Where --download saves the video.")] = Path("downloads"),
    idempotency_key: Annotated[
        str | None, typer.Option(help="Send this Idempotency-Key (to retry a request: charged once).")
    ] = None,
    poll_interval: Annotated[float, typer.Option(help="Seconds between status checks.", min=0.05)] = 1.0,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Make one video: show its price, start it, and with --wait or --download follow it (and save it).

    Prints the job id (with --download, the saved file's path); exits 1 when a followed job fails or is canceled.
    """
    from client import render, single

    requested = {"resolution": resolution, "aspect_ratio": aspect_ratio, "duration": duration}
    opts = single.GenerateOptions(
        image=image,
        prompt=prompt,
        model=model,
        settings={k: v for k, v in requested.items() if v is not None},
        wait=wait,
        download=download,
        output_dir=output_dir,
        idempotency_key=idempotency_key,
        poll_interval=poll_interval,
        image_id=image_id,
        video_id=video_id,
    )
    if image is None and image_id is None and video_id is None and not prompt:
        console.print("[red]Give an IMAGE, an --image-id, a --prompt, or several.[/red]")
        raise typer.Exit(2)
    try:
        with api_session(api_url, token) as api:
            result = single.generate(api, opts, console)
    except single.InputError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        render.print_json(result)
    else:
        typer.echo(result.get("path") or result["job_id"])
    if (wait or download) and result.get("status") != "completed":
        raise typer.Exit(1)


@app.command()
def image(
    prompt: Annotated[
        str, typer.Argument(help="What the image should show (or how to change the references).")
    ],
    reference: Annotated[
        list[str] | None,
        typer.Option(
            "--image", help="A reference to edit: a local image, an https URL or an image id (repeatable)."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Image model slug (i2v models lists them). Default: nano-banana, or where the server cannot run"
            " it, its first available image model."
        ),
    ] = None,
    aspect_ratio: Annotated[str | None, typer.Option(help="e.g. 1:1, 16:9, 9:16.")] = None,
    output_format: Annotated[str | None, typer.Option(help="jpeg or png.")] = None,
    num_images: Annotated[int | None, typer.Option(help="How many images (per model).", min=1)] = None,
    download: Annotated[bool, typer.Option(help="Save the images as {image_id}.{ext}.")] = False,
    output_dir: Annotated[Path, typer.Option(help="Where --download saves the images.")] = Path("downloads"),
    idempotency_key: Annotated[
        str | None, typer.Option(help="Send this Idempotency-Key (to retry a request: charged once).")
    ] = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Make images from a prompt (or edit references), follow the job and print each image id (usable as
    `i2v generate --image-id`); exits 1 when the job fails."""
    from client import render, single

    requested = {"aspect_ratio": aspect_ratio, "output_format": output_format, "num_images": num_images}
    opts = single.ImageOptions(
        prompt=prompt,
        model=model,
        references=list(reference or []),
        settings={k: v for k, v in requested.items() if v is not None},
        download=download,
        output_dir=output_dir,
        idempotency_key=idempotency_key,
    )
    try:
        with api_session(api_url, token) as api:
            result = single.make_image(api, opts, console)
    except single.InputError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        render.print_json(result)
    else:
        for i, img in enumerate(result.get("images") or []):
            paths = result["paths"]
            typer.echo(f"{img['image_id']}  {paths[i] if i < len(paths) else img['url']}")
    if result.get("status") != "completed":
        raise typer.Exit(1)


@app.command()
def bulk(
    prompts_file: Annotated[
        Path, typer.Argument(help="Prompts, one a line; blank lines and # comments ignored.")
    ],
    model: Annotated[str, typer.Option(help="Model slug (i2v models lists them).")],
    images_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder of jpg, jpeg, png and webp images; without it, a video from each prompt alone."
        ),
    ] = None,
    one_to_one: Annotated[bool, typer.Option(help="Pair the n-th image with the n-th prompt.")] = False,
    resolution: Annotated[str | None, typer.Option(help="e.g. 480p, 720p (model default if unset).")] = None,
    aspect_ratio: Annotated[str | None, typer.Option(help="e.g. 16:9, 9:16, 1:1.")] = None,
    duration: Annotated[int | None, typer.Option(help="Seconds per video.")] = None,
    output_dir: Annotated[Path, typer.Option(help="Videos, sidecars and the manifest go here.")] = Path(
        "downloads"
    ),
    concurrency: Annotated[
        int, typer.Option(help="Parallel uploads, submissions, polls, downloads.", min=1)
    ] = 4,
    dry_run: Annotated[
        bool, typer.Option(help="Show the jobs, total credits and balance; charge nothing.")
    ] = False,
    retry_failed: Annotated[bool, typer.Option(help="Resubmit jobs that failed in an earlier run.")] = False,
    poll_interval: Annotated[float, typer.Option(help="Seconds between status checks.", min=0.05)] = 1.0,
    campaign: Annotated[
        str | None,
        typer.Option(help="Campaign id: every job counts against its budget (i2v campaigns list)."),
    ] = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
) -> None:
    """Make a video of every image with every prompt (or one to one): paid once, downloaded once, resumable."""
    from client.bulk import BulkOptions, run_bulk
    from client.bulk_inputs import BulkInputError
    from client.manifest import ManifestError

    requested = {"resolution": resolution, "aspect_ratio": aspect_ratio, "duration": duration}
    opts = BulkOptions(
        prompts_file=prompts_file,
        images_dir=images_dir,
        model=model,
        settings={k: v for k, v in requested.items() if v is not None},
        output_dir=output_dir,
        one_to_one=one_to_one,
        concurrency=concurrency,
        dry_run=dry_run,
        retry_failed=retry_failed,
        poll_interval=poll_interval,
        campaign_id=campaign,
    )
    try:
        with api_session(api_url, token) as api:
            code = run_bulk(api, opts, console, out)
    except (BulkInputError, ManifestError) as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@campaigns_app.command("list")
def campaigns_list(
    client: Annotated[str | None, typer.Option(help="Only this client's campaigns.")] = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """List your campaigns, newest first, with budget and spend."""
    from client import render

    with api_session(api_url, token) as api:
        items = api.team_call("GET", "list-campaigns", params={"client_id": client} if client else None)
    render.print_json(items) if as_json else render.campaigns(out, items["campaigns"])


@campaigns_app.command("show")
def campaigns_show(
    campaign_id: Annotated[str, typer.Argument(help="Campaign id.")],
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
) -> None:
    """One campaign with its spend: credits spent and refunded, jobs by status, per model (JSON)."""
    from client import render

    with api_session(api_url, token) as api:
        render.print_json(api.team_call("GET", "get-campaign", params={"campaign_id": campaign_id}))


@campaigns_app.command("create")
def campaigns_create(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    client: Annotated[str, typer.Option(help="Client id (i2v campaigns clients).")],
    budget: Annotated[int | None, typer.Option(help="Credit budget (none: no limit).", min=0)] = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
) -> None:
    """Create a campaign of one of your clients (prints it as JSON)."""
    from client import render

    body: dict[str, object] = {"client_id": client, "name": name}
    if budget is not None:
        body["budget_credits"] = budget
    with api_session(api_url, token) as api:
        render.print_json(api.team_call("POST", "create-campaign", json=body))


@campaigns_app.command("update")
def campaigns_update(
    campaign_id: Annotated[str, typer.Argument(help="Campaign id.")],
    name: Annotated[str | None, typer.Option(help="New name.")] = None,
    budget: Annotated[int | None, typer.Option(help="New credit budget.", min=0)] = None,
    no_budget: Annotated[bool, typer.Option("--no-budget", help="Remove the budget.")] = False,
    archived: Annotated[bool | None, typer.Option("--archive/--restore", help="Archive or restore.")] = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
) -> None:
    """Rename, re-budget, archive or restore a campaign (prints it as JSON)."""
    from client import render

    body: dict[str, object] = {"campaign_id": campaign_id}
    body |= {
        k: v
        for k, v in {"name": name, "budget_credits": budget, "archived": archived}.items()
        if v is not None
    }
    if no_budget:
        body["budget_credits"] = None
    with api_session(api_url, token) as api:
        render.print_json(api.team_call("POST", "update-campaign", json=body))


@campaigns_app.command("clients")
def campaigns_clients(
    create: Annotated[str | None, typer.Option(help="Create a client with this name first.")] = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
) -> None:
    """List your clients (JSON); --create NAME adds one first."""
    from client import render

    with api_session(api_url, token) as api:
        if create:
            api.team_call("POST", "create-client", json={"name": create})
        render.print_json(api.team_call("GET", "list-clients"))


@app.command()
def mcp(api_url: ApiUrl = DEFAULT_API_URL, token: Token = None) -> None:
    """Serve the i2v tools to an MCP client over stdio (quote, confirm, generate, wait, download)."""
    if not token:
        console.print("[red]Set I2V_TOKEN or pass --token.[/red]")
        raise typer.Exit(2)
    try:
        from client.mcp_server import serve
    except ModuleNotFoundError as exc:
        console.print(f"[red]{exc.name} is missing: install the mcp extra (pip install 'i2v[mcp]').[/red]")
        raise typer.Exit(2) from None
    serve(api_url, token)


def main() -> None:
    """Entry point."""
    app()
