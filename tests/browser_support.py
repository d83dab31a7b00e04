"""A real browser for the console's tests: Debian's chromium driven headless by Selenium through chromium-driver.

`make browser` (and `.ci/run`) install both Debian packages. Without them the browser tests are skipped, saying
what to install; nothing is downloaded at test time (Selenium Manager stays offline).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser")
DRIVER_PATHS = ("chromedriver", "/usr/lib/chromium/chromedriver", "/usr/bin/chromedriver")
SKIP_REASON = "chromium and chromium-driver are not installed (make browser installs the Debian packages)"
#: Where the README's screenshots are written when set (make screenshots); otherwise nowhere.
SCREENSHOTS = os.environ.get("I2V_SCREENSHOTS_DIR")


def find_browser() -> tuple[str, str] | None:
    """Paths of the chromium executable and its chromedriver, or None when either is missing."""
    browser = next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)
    driver = next((found for name in DRIVER_PATHS if (found := shutil.which(name))), None)
    return (browser, driver) if browser and driver else None


@contextmanager
def chromium(downloads: Path, width: int = 1280, height: int = 900, *, phone: bool = False) -> Iterator[Any]:
    """A headless chromium (Selenium WebDriver) that saves downloads into ``downloads``; quit afterwards.

    ``phone`` emulates a mobile viewport of ``width`` x ``height`` (a headless window is never narrower than
    500 px, so a phone's width needs the emulation)."""
    found = find_browser()
    if found is None:
        pytest.skip(SKIP_REASON)
    os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager reach out for a driver or a browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--mute-audio",
        "--autoplay-policy=no-user-gesture-required",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(options=options, service=Service(found[1]))
    try:
        driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
        if phone:
            metrics = {"width": width, "height": height, "deviceScaleFactor": 2, "mobile": True}
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        yield driver
    finally:
        driver.quit()


def until(driver: Any, check: Callable[[Any], Any], what: str, timeout: float = 60) -> Any:
    """Wait until ``check(driver)`` is truthy (bounded: a hang fails the test with ``what``)."""
    from selenium.common.exceptions import WebDriverException

    deadline = time.monotonic() + timeout
    last: WebDriverException | None = None
    while time.monotonic() < deadline:
        try:
            value = check(driver)
            if value:
                return value
        except WebDriverException as exc:  # an element not there yet, or replaced while read: look again
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last error: {last})" if last else ""))


def by(driver: Any, css: str) -> Any:
    """The element matching ``css`` (NoSuchElementException when there is none yet)."""
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def text_of(driver: Any, css: str) -> str:
    """The visible text of the element matching ``css``."""
    text: str = by(driver, css).text
    return text


def shot(driver: Any, name: str) -> None:
    """Save a screenshot as ``name``.png when I2V_SCREENSHOTS_DIR is set (make screenshots)."""
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(SCREENSHOTS) / f"{name}.png"))


def sign_in(driver: Any, stack: str, user: uuid.UUID, screenshot: bool = False) -> None:
    """Open the console signed out and use the dev sign-in as ``user`` (it lands on the Generate page)."""
    driver.get(stack + "/")
    driver.execute_script("localStorage.clear(); sessionStorage.clear();")
    driver.get(stack + "/#/sign-in")
    # Loaded afresh: requests still in flight from the page opened signed in (answered 401 once the session is
    # gone, which sends the console to the sign-in page again) cannot replace the form while it is filled in.
    driver.refresh()
    field = until(driver, lambda d: by(d, "#dev-user"), "the sign-in form")
    field.clear()
    field.send_keys(str(user))
    if screenshot:
        shot(driver, "sign-in")
    by(driver, "#dev-sign-in").click()
    until(driver, lambda d: by(d, "#model"), "the generate page")


def choose(driver: Any, select_id: str, value: str) -> None:
    """Pick ``value`` in the <select> with id ``select_id`` once that option is there."""
    from selenium.webdriver.support.ui import Select

    until(driver, lambda d: by(d, f"#{select_id} option[value='{value}']"), f"{value} in #{select_id}")
    Select(by(driver, f"#{select_id}")).select_by_value(value)
