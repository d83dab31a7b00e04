"""The console's pages for scripts and agencies, used in a real browser: API keys, clients and campaigns, webhooks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from shared.billing import ledger as credits
from shared.db import Database
from shared.webhooks import delivery
from tests.browser_support import by, choose, chromium, shot, sign_in, text_of, until
from tests.conftest import debit_job
from tests.media_support import EXAMPLES
from tests.webhook_support import receiving


@pytest.fixture(scope="module")
def browser(stack: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless chromium for this module's tests."""
    with chromium(tmp_path_factory.mktemp("downloads")) as driver:
        yield driver


def _open(driver: Any, stack: str, route: str, ready_css: str) -> None:
    driver.get(f"{stack}/#/{route}")
    until(driver, lambda d: by(d, ready_css), f"the {route} page")


def _row(driver: Any, css: str) -> Any:
    return until(driver, lambda d: by(d, css), css)


def _press_twice(driver: Any, css: str) -> None:
    """A button that asks first: press, see it ask, press again."""
    by(driver, css).click()
    until(driver, lambda d: by(d, css).get_attribute("data-armed") == "1", "the button to ask")
    by(driver, css).click()


def test_an_api_key_is_shown_once_limited_to_its_scopes_and_revoked(browser: Any, stack: str) -> None:
    """The API keys page creates a read-only key shown once (the API takes it to read and refuses it to generate),
    lists it without the secret, and revokes it after asking twice (the API then refuses it)."""
    sign_in(browser, stack, uuid.uuid4())
    _open(browser, stack, "keys", "#create-key")
    by(browser, "#key-name").send_keys("render farm")
    for scope in ("generate", "campaigns", "webhooks"):
        by(browser, f"#key-scopes-{scope}").click()  # unticked: read only
    by(browser, "#create-key").click()
    key = until(browser, lambda d: text_of(d, "#new-key"), "the new key")
    assert key.startswith("i2v_sk_")
    shot(browser, "keys")
    auth = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{stack}/functions/v1/list-jobs", headers=auth).status_code == 200
    refused = httpx.post(
        f"{stack}/functions/v1/generate-video",
        json={"model_id": "local-motion", "prompt": "zoom"},
        headers={**auth, "Idempotency-Key": "k1"},
    )
    assert refused.status_code == 403, refused.text
    row = "#keys tbody tr"
    until(
        browser,
        lambda d: "read" in text_of(d, row) and text_of(d, f"{row} .key-state") == "active",
        "the key",
    )

    browser.refresh()
    until(browser, lambda d: by(d, row), "the keys after a reload")
    assert key not in browser.page_source  # shown once
    _press_twice(browser, f"{row} [data-action=revoke]")
    until(browser, lambda d: text_of(d, f"{row} .key-state").startswith("revoked"), "the key revoked")
    assert httpx.get(f"{stack}/functions/v1/list-jobs", headers=auth).status_code == 401


def test_a_campaign_budget_is_spent_from_the_generate_page(browser: Any, stack: str, db: Database) -> None:
    """A client and a campaign with a budget are added; a video started on the Generate page with that campaign
    spends from it, and the price then warns that the budget left is short; the campaign's name lists its jobs
    alone; a new budget and archiving show; a budget that is not a whole number is refused in
    words before any request."""
    user = uuid.uuid4()
    credits.grant(user, 10, "console test")
    sign_in(browser, stack, user)
    _open(browser, stack, "campaigns", "#create-client")
    by(browser, "#client-name").send_keys("Acme Outdoor")
    by(browser, "#create-client").click()
    until(browser, lambda d: by(d, "#campaign-client option"), "the client to choose")
    by(browser, "#campaign-name").send_keys("Spring launch")
    by(browser, "#campaign-budget").send_keys("3")
    by(browser, "#create-campaign").click()
    row = "#clients tr[data-campaign-id]"
    _row(browser, row)
    campaign_id = by(browser, row).get_attribute("data-campaign-id")
    assert text_of(browser, f"{row} .campaign-remaining") == "3 credits"

    browser.get(f"{stack}/#/generate")
    choose(browser, "campaign", campaign_id)
    choose(browser, "duration", "2")
    by(browser, "#image").send_keys(str(EXAMPLES / "square.jpg"))
    until(browser, lambda d: "uploaded" in text_of(d, "#upload-state"), "the upload")
    until(browser, lambda d: text_of(d, "#price") == "2 credits", "the quote")
    by(browser, "#generate").click()
    job_id = until(browser, lambda d: text_of(d, "#started-job"), "the job id")
    note = until(
        browser, lambda d: "budget" in text_of(d, "#price-note") and text_of(d, "#price-note"), "a warning"
    )
    assert note == "The campaign has 1 credit of its budget left: not enough for this video."
    token = browser.execute_script("return JSON.parse(localStorage.getItem('i2v.dev-session')).access_token")
    status = httpx.get(
        f"{stack}/functions/v1/get-video-status",
        params={"job_id": job_id},
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    assert status["campaign_id"] == campaign_id

    credits.grant(user, 2, "console test")
    httpx.post(  # a job outside the campaign (a prompt alone), which its list leaves out
        f"{stack}/functions/v1/generate-video",
        json={"model_id": "local-motion", "prompt": "orbit", "settings": {"duration": 1}},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
    ).raise_for_status()
    _open(browser, stack, "campaigns", row)
    by(browser, f"{row} [data-action=jobs]").click()
    until(browser, lambda d: by(d, "#jobs-scope"), "the campaign's jobs")
    shown = until(browser, lambda d: d.find_elements("css selector", "#jobs > li"), "the jobs")
    assert [li.get_attribute("id") for li in shown] == [f"job-{job_id}"]
    _open(browser, stack, "campaigns", row)
    assert text_of(browser, f"{row} .campaign-spent") == "2 credits"
    assert text_of(browser, f"{row} .campaign-remaining") == "1 credit"
    budget = by(browser, f"#budget-{campaign_id}")
    budget.clear()
    budget.send_keys("5")
    by(browser, f"{row} [data-action=set-budget]").click()
    until(browser, lambda d: text_of(d, f"{row} .campaign-remaining") == "3 credits", "the new budget")
    shot(browser, "campaigns")
    budget = by(browser, f"#budget-{campaign_id}")
    budget.clear()
    budget.send_keys("2.5")
    by(browser, f"{row} [data-action=set-budget]").click()
    assert "whole number" in until(browser, lambda d: text_of(d, "[role=alert]"), "the refusal")
    by(browser, f"{row} [data-action=archive]").click()
    until(browser, lambda d: by(d, f"{row} [data-action=restore]"), "the campaign archived")
    assert text_of(browser, f"{row} .campaign-remaining") == "3 credits"


def test_webhook_endpoints_are_added_watched_disabled_and_enabled(
    browser: Any, stack: str, db: Database, tmp_path: Path
) -> None:
    """The Webhooks page adds an endpoint and shows its secret once (deliveries verify with it), shows a failing
    endpoint and its error, sends a delivery again and a test event, and disables (asking twice) and enables the
    endpoint."""
    user = uuid.uuid4()
    credits.grant(user, 10, "console test")
    sign_in(browser, stack, user)
    with receiving() as receiver:
        _open(browser, stack, "webhooks", "#create-webhook")
        by(browser, "#webhook-url").send_keys(receiver.url)
        by(browser, "#webhook-events-job\\.processing").click()  # unticked: the other three events
        by(browser, "#create-webhook").click()
        secret = until(browser, lambda d: text_of(d, "#new-secret"), "the signing secret")
        assert secret.startswith("whsec_")
        endpoint = "#endpoints tbody tr"
        events = until(browser, lambda d: text_of(d, f"{endpoint} td[data-label=Events]"), "the endpoint")
        assert events == "job.canceled, job.completed, job.failed"

        receiver.answers.append((500, {}))
        job = debit_job(db, user)
        db.call("cancel_job", user=user, job=job)
        delivery.deliver_due()
        browser.refresh()
        until(browser, lambda d: "failing since" in text_of(d, f"{endpoint} .endpoint-state"), "the failure")
        assert "HTTP 500" in text_of(browser, f"{endpoint} .endpoint-health")
        shot(browser, "webhooks")

        sent = "#deliveries tbody tr"
        assert text_of(browser, f"{sent} .delivery-state") == "pending"
        with db.transaction() as tx:  # the retry falls due now instead of in 5 s
            tx.query("update webhook_deliveries set next_attempt_at = now() where job_id = %s", (job,))
        delivery.deliver_due()
        browser.refresh()
        until(browser, lambda d: text_of(d, f"{sent} .delivery-state") == "delivered", "the retry delivered")
        assert text_of(browser, f"{endpoint} .endpoint-state") == "active"
        by(browser, f"{sent} [data-action=redeliver]").click()
        until(
            browser, lambda d: text_of(d, f"{sent} .delivery-state") == "pending", "the delivery queued again"
        )
        delivery.deliver_due()
        bodies = [body for _, body in receiver.received]
        assert len(bodies) == 3 and len(set(bodies)) == 1
        for headers, body in receiver.received:
            assert Webhook(secret).verify(body, headers)["type"] == "job.canceled"

        by(browser, f"{endpoint} [data-action=test]").click()
        until(browser, lambda d: "webhook.test" in text_of(d, sent), "the test event queued")
        delivery.deliver_due()
        tested = Webhook(secret).verify(receiver.received[-1][1], receiver.received[-1][0])
        assert tested["type"] == "webhook.test"
        _press_twice(browser, f"{endpoint} [data-action=disable]")
        until(browser, lambda d: "disabled by you" in text_of(d, f"{endpoint} .endpoint-state"), "disabled")
        by(browser, f"{endpoint} [data-action=enable]").click()
        until(browser, lambda d: text_of(d, f"{endpoint} .endpoint-state") == "active", "enabled again")
