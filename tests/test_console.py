"""The web console: served by the local server, and used end to end in a real browser (headless chromium)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.billing import ledger as credits
from shared.db import Database
from tests.browser_support import by, choose, chromium, shot, sign_in, text_of, until
from tests.conftest import configured, debit_job
from tests.emulators.supabase_auth import SupabaseAuthEmulator
from tests.media_support import EXAMPLES

# Sums the layout shifts Chrome measures on the page (Layout Instability API).
_WATCH_SHIFTS = """
window.__shift = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) if (!entry.hadRecentInput) window.__shift += entry.value;
}).observe({type: "layout-shift", buffered: false});
"""


def test_console_is_served_at_the_root(anon: httpx.Client) -> None:
    """GET / is the console's page, its modules and stylesheet are served, and API paths stay JSON errors."""
    page = anon.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="js/app.js"' in page.text
    assert anon.get("/js/app.js").headers["content-type"].split(";")[0] in (
        "text/javascript",
        "application/javascript",
    )
    assert anon.get("/style.css").status_code == 200
    missing = anon.get("/functions/v1/no-such-function")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert anon.post("/").status_code == 405


def test_dev_sign_in_mints_a_token_the_api_accepts(anon: httpx.Client) -> None:
    """With the stack's own dev secret, config.json offers the dev sign-in and its token reads the API."""
    assert anon.get("/config.json").json() == {"api_url": "", "dev_sign_in": True}
    user = uuid.uuid4()
    signed = anon.post("/console/dev-sign-in", json={"user_id": str(user)}).json()
    assert signed["user_id"] == str(user)
    me = anon.get("/functions/v1/get-credits", headers={"Authorization": f"Bearer {signed['access_token']}"})
    assert me.status_code == 200 and me.json()["balance"] == 0


def test_dev_sign_in_is_gone_with_a_supabase_secret(anon: httpx.Client) -> None:
    """With SUPABASE_JWT_SECRET set the dev sign-in answers 404 and config.json offers Supabase sign-in."""
    with configured(
        SUPABASE_JWT_SECRET="a-project-secret-of-enough-length-0123456789",
        SUPABASE_URL="https://abcdefghijklmnopqrst.supabase.co",
        SUPABASE_ANON_KEY="anon-key",
    ):
        assert anon.post("/console/dev-sign-in", json={}).status_code == 404
        config = anon.get("/config.json").json()
    assert config["dev_sign_in"] is False
    assert config["supabase_url"] == "https://abcdefghijklmnopqrst.supabase.co"


@pytest.fixture(scope="module")
def browser(stack: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless chromium for this module's tests (downloads go to its own directory)."""
    downloads = tmp_path_factory.mktemp("downloads")
    with chromium(downloads) as driver:
        driver.downloads = downloads
        yield driver


def test_supabase_sign_in_refresh_and_sign_out(stack: str, db: Database, tmp_path: Path) -> None:
    """With Supabase Auth configured the console signs in through supabase-js: a wrong password is refused in
    words, the right one reads the API with the project's ES256 token (refreshed as it nears expiry), and
    signing out ends the session at Auth."""
    with SupabaseAuthEmulator(access_token_ttl=60) as auth:  # under supabase-js's 90 s margin: refreshed
        user = auth.add_user("ada@example.com", "correct horse battery")
        credits.grant(user, 7, "console test")
        supabase = {
            "SUPABASE_URL": auth.base_url,
            "SUPABASE_ANON_KEY": auth.anon_key,
            "SUPABASE_JWKS_URL": auth.jwks_url,
            "SUPABASE_JWT_ISSUER": auth.issuer,
        }
        with configured(**supabase), chromium(tmp_path) as driver:
            driver.get(stack + "/")
            driver.execute_script("localStorage.clear(); sessionStorage.clear();")
            driver.get(stack + "/#/sign-in")
            email = until(driver, lambda d: by(d, "#email"), "the Supabase sign-in form")
            email.send_keys("ada@example.com")
            by(driver, "#password").send_keys("wrong password")
            by(driver, "#password-sign-in").click()
            until(driver, lambda d: "Invalid login credentials" in d.page_source, "the refusal in words")
            assert "#/sign-in" in driver.current_url
            by(driver, "#password").clear()
            by(driver, "#password").send_keys("correct horse battery")
            by(driver, "#password-sign-in").click()
            until(driver, lambda d: by(d, "#model"), "the generate page")
            assert text_of(driver, "#who-id") == "ada@example.com"
            driver.get(stack + "/#/credits")
            until(driver, lambda d: text_of(d, "#balance").startswith("7"), "the balance read with the token")
            assert auth.grants("password") == 2 and auth.grants("refresh_token") >= 1
            by(driver, "#sign-out").click()
            until(driver, lambda d: by(d, "#email"), "the sign-in form after signing out")
    assert ("POST", "/auth/v1/logout", None) in auth.requests


def _pick_image(driver: Any, name: str = "landscape.jpg") -> None:
    by(driver, "#image").send_keys(str(EXAMPLES / name))
    until(driver, lambda d: "uploaded" in text_of(d, "#upload-state"), "the upload")


def _generation_entries(db: Database, user: uuid.UUID) -> list[dict[str, Any]]:
    data = db.call("get_credits", user=user, signup_credits=0, limit=200)
    return [e for e in data["entries"] if e["kind"] == "generation"]


def test_generate_watch_play_and_download(browser: Any, stack: str, db: Database) -> None:
    """Sign in, upload, see the quote, generate, watch the job complete, play the video (a duration, time
    advancing), download it under its documented name, and see the debit in the ledger."""
    user = uuid.uuid4()
    credits.grant(user, 10, "console test")
    sign_in(browser, stack, user, screenshot=True)
    by(browser, "#prompt").send_keys("slow zoom in on the horizon")
    choose(browser, "resolution", "480p")
    choose(browser, "aspect_ratio", "16:9")
    choose(browser, "duration", "2")
    _pick_image(browser)
    until(browser, lambda d: text_of(d, "#price") == "2 credits", "the quote")
    assert text_of(browser, "#balance-after") == "8 credits"
    shot(browser, "generate")
    by(browser, "#generate").click()
    job_id = until(browser, lambda d: text_of(d, "#started-job"), "the job id")

    browser.get(stack + "/#/jobs")
    row = f"#job-{job_id}"
    until(browser, lambda d: by(d, row).get_attribute("data-status") == "completed", "the job to complete")
    shot(browser, "jobs")

    browser.get(stack + f"/#/gallery?job={job_id}")
    video = until(browser, lambda d: by(d, f"#video-{job_id} video"), "the player")
    duration = until(
        browser,
        lambda d: d.execute_script("return arguments[0].duration || 0", video),
        "the video's duration",
    )
    assert 1.5 <= duration <= 2.5
    browser.execute_script("arguments[0].muted = true; arguments[0].play();", video)
    until(browser, lambda d: d.execute_script("return arguments[0].currentTime", video) > 0.3, "playback")
    shot(browser, "gallery")
    link = by(browser, f"#video-{job_id} a.download")
    name = link.get_attribute("download")
    assert name.startswith(f"{job_id}_local-motion_") and name.endswith(".mp4")
    link.click()
    saved = until(
        browser, lambda d: (d.downloads / name).exists() and (d.downloads / name), "the download", timeout=30
    )
    assert saved.read_bytes()[4:8] == b"ftyp"

    browser.get(stack + "/#/credits")
    until(browser, lambda d: text_of(d, "#balance") == "8 credits", "the balance")
    ledger = text_of(browser, "#ledger")
    assert "-2" in ledger and "generation" in ledger and job_id in ledger
    shot(browser, "credits")


def test_make_an_image_animate_it_and_continue_the_video(browser: Any, stack: str, db: Database) -> None:
    """Make an image on the Image page (quoted, charged once), see it in the Jobs and Gallery pages, animate it
    from the gallery (the video starts from that image), then continue that video from its last frame."""
    user = uuid.uuid4()
    credits.grant(user, 30, "console test")
    sign_in(browser, stack, user)
    browser.get(stack + "/#/image")
    prompt = until(browser, lambda d: by(d, "#image-prompt"), "the image form")
    choose(browser, "image-model", "local-card")
    prompt.send_keys("A lighthouse at dusk")
    choose(browser, "image-aspect", "16:9")
    until(browser, lambda d: text_of(d, "#image-price") == "1 credit", "the image quote")
    assert not by(browser, "#reference").is_displayed()  # local-card takes no reference image
    shot(browser, "image")
    by(browser, "#make-image").click()
    image_job = until(browser, lambda d: text_of(d, "#started-image-job"), "the image job id")
    browser.get(stack + "/#/jobs")
    until(
        browser,
        lambda d: by(d, f"#job-{image_job}").get_attribute("data-status") == "completed",
        "the image",
    )
    assert "Image · local-card" in text_of(browser, f"#job-{image_job}")

    browser.get(stack + f"/#/gallery?job={image_job}")
    card = until(
        browser, lambda d: d.find_element("css selector", f'[data-job="{image_job}"]'), "the image card"
    )
    picture = card.find_element("css selector", "img")
    size = until(
        browser,
        lambda d: d.execute_script(
            "const i = arguments[0]; return i.naturalWidth ? [i.naturalWidth, i.naturalHeight] : null",
            picture,
        ),
        "the image shown",
    )
    assert size[0] > 0 and abs(size[0] / size[1] - 16 / 9) < 0.01  # shown, at the aspect ratio asked for
    fits = "return arguments[0].getBoundingClientRect().right <= arguments[1].getBoundingClientRect().right"
    assert browser.execute_script(fits, picture, card)  # the image stays inside its card
    shot(browser, "gallery-image")
    image_id = card.get_attribute("id").removeprefix("image-")
    card.find_element("css selector", '[data-action="animate"]').click()
    until(
        browser,
        lambda d: image_id in text_of(d, "#upload-state"),
        "the generate page starting from the image",
    )
    choose(browser, "resolution", "480p")
    choose(browser, "duration", "1")
    until(browser, lambda d: text_of(d, "#price") == "1 credit", "the video quote")
    by(browser, "#generate").click()
    video_job = until(browser, lambda d: text_of(d, "#started-job"), "the video job id")

    browser.get(stack + "/#/jobs")
    until(
        browser,
        lambda d: by(d, f"#job-{video_job}").get_attribute("data-status") == "completed",
        "the video",
    )
    browser.get(stack + f"/#/gallery?job={video_job}")
    until(browser, lambda d: by(d, f'#video-{video_job} [data-action="continue"]'), "the video card").click()
    until(
        browser, lambda d: video_job in text_of(d, "#upload-state"), "the generate page continuing the video"
    )
    until(
        browser,
        lambda d: text_of(d, "#price").endswith("credit") or text_of(d, "#price").endswith("credits"),
        "quote",
    )
    by(browser, "#generate").click()
    sequel = until(browser, lambda d: text_of(d, "#started-job"), "the continued job id")
    assert len({image_job, video_job, sequel}) == 3
    entries = _generation_entries(db, user)
    assert sorted(str(e["job_id"]) for e in entries) == sorted([image_job, video_job, sequel])


def test_cancel_refunds_and_retry_prefills(browser: Any, stack: str, db: Database) -> None:
    """Cancel a waiting job from the jobs page: it shows canceled without moving the layout, the refund is in
    the ledger, and "Retry as new" opens the generate page with the job's prompt."""
    user = uuid.uuid4()
    credits.grant(user, 5, "console test")
    job = debit_job(db, user, 3, prompt="pan right across the scene")
    sign_in(browser, stack, user)
    browser.get(stack + "/#/jobs")
    row = f"#job-{job}"
    until(browser, lambda d: by(d, row).get_attribute("data-status") == "pending", "the pending job")
    browser.execute_script(_WATCH_SHIFTS)
    by(browser, f"{row} [data-action=cancel]").click()
    until(browser, lambda d: by(d, row).get_attribute("data-status") == "canceled", "the cancel")
    time.sleep(0.3)  # let the observer report
    assert browser.execute_script("return window.__shift") < 0.01
    assert db.call("get_credits", user=user, signup_credits=0, limit=10)["balance"] == 5
    browser.get(stack + "/#/credits")
    until(browser, lambda d: "refund" in text_of(d, "#ledger"), "the refund in the ledger")
    browser.get(stack + "/#/jobs")
    until(browser, lambda d: by(d, f"{row} [data-action=retry]"), "the retry button").click()
    prompt = until(browser, lambda d: by(d, "#prompt").get_attribute("value"), "the prefilled prompt")
    assert prompt == "pan right across the scene"


def test_a_video_from_a_prompt_alone(browser: Any, stack: str, db: Database) -> None:
    """With no image, a prompt is enough: the price shows the start image and the video, and the job makes the
    title card, then the video, charged once for both."""
    user = uuid.uuid4()
    credits.grant(user, 5, "console test")
    sign_in(browser, stack, user)
    choose(browser, "duration", "1")
    assert "Choose an image, or type a prompt" in text_of(browser, "#price-note")
    by(browser, "#prompt").send_keys("A quiet harbour at dawn, slow zoom in")
    until(
        browser, lambda d: text_of(d, "#price") == "2 credits (start image 1 + video 1)", "the quote in parts"
    )
    by(browser, "#generate").click()
    job_id = until(browser, lambda d: text_of(d, "#started-job"), "the job id")
    token = browser.execute_script("return JSON.parse(localStorage.getItem('i2v.dev-session')).access_token")
    auth = {"Authorization": f"Bearer {token}"}

    def finished() -> dict[str, Any] | None:
        job: dict[str, Any] = httpx.get(
            f"{stack}/functions/v1/get-video-status", params={"job_id": job_id}, headers=auth
        ).json()
        return job if job["status"] in ("completed", "failed") else None

    done = until(browser, lambda d: finished(), "the job to finish")
    assert done["status"] == "completed" and done["stage"] == "video" and len(done["images"]) == 1, done
    assert [e["job_id"] for e in _generation_entries(db, user)] == [job_id]
    assert db.call("get_credits", user=user, signup_credits=0, limit=10)["balance"] == 3


def test_the_jobs_page_names_the_step_of_a_video_from_a_prompt_alone(browser: Any, stack: str) -> None:
    """A prompt-only video reads "Step 1 of 2: making the start image", then "Step 2 of 2, the video: ..." while it
    runs; a finished one reads like any other job."""
    browser.get(stack + "/")
    texts = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "import('./js/pages/jobs.js').then((m) => done(["
        " m.progressText({status: 'processing', stage: 'image', progress: 0.5}),"
        " m.progressText({status: 'pending', stage: 'video', queue_position: 2}),"
        " m.progressText({status: 'processing', stage: 'video', progress: 0.25}),"
        " m.progressText({status: 'completed', stage: 'video'}),"
        " m.progressText({status: 'processing', stage: null, progress: 0.5})]));"
    )
    assert texts == [
        "Step 1 of 2: making the start image",
        "Step 2 of 2, the video: Waiting: position 2 in the queue",
        "Step 2 of 2, the video: Rendering: 25%",
        "Done",
        "Rendering: 50%",
    ]


def test_insufficient_credits_is_shown_in_words(browser: Any, stack: str, db: Database) -> None:
    """With no credits the quote warns, and generating shows the API's 402 in words; nothing is charged."""
    user = uuid.uuid4()
    sign_in(browser, stack, user)
    choose(browser, "duration", "2")
    _pick_image(browser, "square.jpg")
    until(browser, lambda d: "does not cover" in text_of(d, ".price"), "the quote's warning")
    by(browser, "#generate").click()
    message = until(browser, lambda d: text_of(d, "[role=alert]"), "the error message")
    assert "costs 2 credits" in message and "balance is 0" in message
    assert _generation_entries(db, user) == []


def test_a_page_left_while_loading_never_shows_over_the_next(browser: Any, stack: str) -> None:
    """Leaving a page while it still waits for the API shows only the page gone to: the slow page's late
    answer is not appended below it (nor does it wipe it)."""
    sign_in(browser, stack, uuid.uuid4())
    browser.execute_script(
        "const real = window.fetch; window.fetch = (url, ...rest) => String(url).includes('list-models')"
        " ? new Promise((ok) => setTimeout(() => ok(real(url, ...rest)), 1500)) : real(url, ...rest);"
        " location.hash = '#/image'; setTimeout(() => { location.hash = '#/credits'; }, 300);"
    )
    until(browser, lambda d: text_of(d, "#balance"), "the credits page")
    time.sleep(2.5)  # past the slow answer
    headings = browser.execute_script(
        "return [...document.querySelectorAll('main h1')].map((e) => e.textContent)"
    )
    assert headings == ["Credits"]
    assert (
        browser.execute_script("return document.querySelector('main form.generate, main #image-model')")
        is None
    )
    assert "#/credits" in browser.current_url


def test_double_click_and_reload_charge_once(browser: Any, stack: str, db: Database) -> None:
    """A double click on Generate makes one job; a request left unanswered at a reload is sent again with the
    same Idempotency-Key, so the API replays it instead of charging again."""
    from selenium.webdriver.common.action_chains import ActionChains

    user = uuid.uuid4()
    credits.grant(user, 10, "console test")
    sign_in(browser, stack, user)
    choose(browser, "duration", "1")
    _pick_image(browser, "portrait.jpg")
    until(browser, lambda d: text_of(d, "#price") == "1 credit", "the quote")
    ActionChains(browser).double_click(by(browser, "#generate")).perform()
    first = until(browser, lambda d: text_of(d, "#started-job"), "the job id")
    time.sleep(0.5)
    assert [e["job_id"] for e in _generation_entries(db, user)] == [first]

    # A request sent, then the page reloaded before its answer: the key and body wait in sessionStorage.
    body = browser.execute_script(
        "return {model_id: 'local-motion', prompt: 'orbit', image_url: arguments[0],"
        " settings: {resolution: 'auto', aspect_ratio: 'auto', duration: 1}}",
        browser.execute_script(
            "return JSON.parse(localStorage.getItem('i2v.job-images'))[arguments[0]]", first
        ),
    )
    key = f"reload-{uuid.uuid4()}"
    browser.execute_script(
        "sessionStorage.setItem('i2v.generate.pending', JSON.stringify({key: arguments[0], body: arguments[1]}))",
        key,
        body,
    )
    browser.refresh()
    second = until(browser, lambda d: text_of(d, "#started-job"), "the resent request's answer")
    assert browser.execute_script("return sessionStorage.getItem('i2v.generate.pending')") is None
    token = browser.execute_script("return JSON.parse(localStorage.getItem('i2v.dev-session')).access_token")
    replay = httpx.post(
        f"{stack}/functions/v1/generate-video",
        json=body,
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
    )
    assert replay.headers["idempotent-replayed"] == "true" and replay.json()["job_id"] == second
    assert len(_generation_entries(db, user)) == 2


def test_phone_width_labels_and_keyboard(stack: str, tmp_path: Path) -> None:
    """At a phone's width no page scrolls sideways, every form control has a label, and the navigation is
    reachable by keyboard."""
    from selenium.webdriver.common.keys import Keys

    user = uuid.uuid4()
    credits.grant(user, 3, "console test")
    with chromium(tmp_path, width=390, height=844, phone=True) as phone:
        sign_in(phone, stack, user)
        for route in ("generate", "jobs", "gallery", "credits"):
            phone.get(f"{stack}/#/{route}")
            until(
                phone, lambda d: by(d, "h1").text and not d.find_elements("css selector", ".loading"), route
            )
            wide = phone.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert wide <= 0, f"{route} scrolls sideways by {wide}px"
            assert phone.execute_script("return window.innerWidth") == 390
            unlabeled = phone.execute_script(
                "return [...document.querySelectorAll('input, select, textarea')]"
                ".filter(e => !e.labels.length && !e.getAttribute('aria-label')).map(e => e.id)"
            )
            assert unlabeled == [], route
        phone.get(f"{stack}/#/generate")
        until(phone, lambda d: by(d, "#model"), "the generate page")
        shot(phone, "phone-generate")
        phone.execute_script("document.querySelector('.skip').focus()")
        for _ in range(6):
            phone.switch_to.active_element.send_keys(Keys.TAB)
            if phone.execute_script("return document.activeElement.textContent") == "Jobs":
                break
        phone.switch_to.active_element.send_keys(Keys.ENTER)
        until(phone, lambda d: text_of(d, "h1") == "Jobs", "the jobs page, opened from the keyboard")


def test_operator_page_for_operators_only(browser: Any, stack: str, db: Database, tmp_path: Path) -> None:
    """An operator finds Operations in the navigation: ledger checks at 0, jobs by model and provider, the
    unfinished jobs oldest first, and it fits a phone's width; a user who is no operator neither sees the link nor
    reads the page (told so in words)."""
    operator, customer = uuid.uuid4(), uuid.uuid4()
    credits.grant(customer, 3, "console test")
    waiting = debit_job(db, customer, 3, prompt="a job that waits")
    sign_in(browser, stack, customer)
    nav = text_of(browser, "#nav")
    assert "Credits" in nav and "Operations" not in nav
    browser.get(stack + "/#/operator")
    message = until(browser, lambda d: text_of(d, "[role=alert]"), "the refusal")
    assert "for operators" in message

    with configured(OPERATOR_USER_IDS=str(operator)):
        sign_in(browser, stack, operator)
        until(browser, lambda d: "Operations" in text_of(d, "#nav"), "the Operations link")
        browser.get(stack + "/#/operator")
        check = until(browser, lambda d: text_of(d, "#ledger-check"), "the ledger check")
        assert "0 mismatches" in check
        assert "local-motion" in text_of(browser, "#job-figures")
        assert str(waiting) in text_of(browser, "#stuck")
        assert " delivered, " in text_of(browser, "#webhook-deliveries")
        assert text_of(browser, "#endpoints-failing").isdigit()
        shot(browser, "operator")
        with chromium(tmp_path, width=390, height=844, phone=True) as phone:
            sign_in(phone, stack, operator)
            phone.get(stack + "/#/operator")
            until(phone, lambda d: text_of(d, "#ledger-check"), "the ledger check on a phone")
            wide = phone.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert wide <= 0, f"the operator page scrolls sideways by {wide}px"
