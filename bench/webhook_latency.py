"""How soon a customer's webhook endpoint hears of a job's change on the local server: from the moment a
cancel-video request is sent (its transaction queues a job.canceled delivery) to the moment the signed POST
reaches the endpoint, with the listening sender (WEBHOOK_SENDER, the default). The cancel's own answer time is
reported beside it.

Jobs wait pending (LOCAL_ENGINE_WORKERS=0) so that only the cancels change them; the receiver answers 204 at
once. Before the listening sender, an event waited for housekeeping: up to RECONCILE_INTERVAL_S (30 s) locally
and up to a minute on Lambda.

    python -m bench.webhook_latency [--jobs 100] [--out bench/results/webhook_latency.json]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench._stack import EXAMPLES, RESULTS, local_stack, machine, new_user, summary, upload


def _receiver(arrivals: dict[str, float]) -> ThreadingHTTPServer:
    """An endpoint answering 204 and noting when each job's event arrived."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            arrivals.setdefault(json.loads(body)["data"]["job_id"], time.perf_counter())
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    """Cancel ``--jobs`` pending jobs one by one and time each event's arrival at the endpoint."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--out", type=Path, default=RESULTS / "webhook_latency.json")
    args = parser.parse_args()
    arrivals: dict[str, float] = {}
    receiver = _receiver(arrivals)
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks"
    env = {"LOCAL_ENGINE_WORKERS": "0", "ALLOW_PRIVATE_WEBHOOK_URLS": "true", "RATE_LIMITS": "off"}
    latencies: list[float] = []
    answers: list[float] = []
    with local_stack(**env) as base, new_user(base, args.jobs * 10) as client:
        created = client.post(
            "/functions/v1/create-webhook-endpoint", json={"url": url, "events": ["job.canceled"]}
        )
        created.raise_for_status()
        image_url = upload(client, (EXAMPLES / "square.jpg").read_bytes())
        body = {"model_id": "local-motion", "prompt": "zoom in", "image_url": image_url}
        for _ in range(args.jobs):
            job = client.post(
                "/functions/v1/generate-video", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
            )
            job_id = job.json()["job_id"]
            sent = time.perf_counter()
            client.post("/functions/v1/cancel-video", json={"job_id": job_id}).raise_for_status()
            answers.append(time.perf_counter() - sent)
            deadline = sent + 60
            while job_id not in arrivals and time.perf_counter() < deadline:
                time.sleep(0.0005)
            if job_id not in arrivals:
                raise SystemExit(f"no event for {job_id} within 60 s")
            latencies.append(arrivals[job_id] - sent)
    receiver.shutdown()
    report = {
        "machine": machine(),
        "jobs": args.jobs,
        "cancel_to_endpoint": {**summary(latencies), "max_ms": round(max(latencies) * 1000, 2)},
        "cancel_answer": summary(answers),
        "before": "up to RECONCILE_INTERVAL_S (30 s) on i2v serve; up to 60 s on Lambda (the schedule)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("cancel_to_endpoint", "cancel_answer")}))


if __name__ == "__main__":
    main()
