"""The status page at /ui, in a real headless Chromium (Debian's `chromium` and
`chromium-driver`, driven by Selenium), over the simulated owners' day of
tests/owners_rig.py at 07:00: the login, then what each section shows, checked against
the store; screenshots at a laptop's and a phone's width are saved in the test's
temporary folder.

Without Chromium this fails, never skips: `.ci/run` installs it, and so does
`apt-get install -y chromium chromium-driver`.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
import pytest
import pytest_asyncio

from tests.owners_rig import ADMIN_TOKEN, KEEP_ALIVE_AT, MIDNIGHT, READ_TOKEN, OwnersRig, owners_rig
from warden.budget.keeper import BudgetKeeper
from warden.logging import configure_logging
from warden.spend.savings import savings_of
from warden.ui.session import COOKIE

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL = (
    "the status page is tested in Debian's Chromium: apt-get install -y chromium "
    "chromium-driver (.ci/run installs them when they are missing)"
)
SEVEN = MIDNIGHT + timedelta(hours=7)
DESKTOP = (1280, 900)
PHONE = (390, 844)
T = TypeVar("T")
pytestmark = pytest.mark.asyncio(loop_scope="module")


def _chromium() -> Any:
    """A headless Chromium without a network past this machine or a profile of its own."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: {INSTALL}", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="warden-chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


class Browser:
    """Selenium, whose calls block, run off the event loop that serves the page."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(call, *args)

    async def open(self, url: str) -> None:
        await self.run(self.driver.get, url)

    async def text(self, css: str) -> str:
        return await self.run(lambda: self.driver.find_element("css selector", css).text)

    async def all(self, css: str, attribute: str | None = None) -> list[str]:
        def read() -> list[str]:
            found = self.driver.find_elements("css selector", css)
            return [e.get_attribute(attribute) if attribute else e.text for e in found]

        return await self.run(read)

    async def log_in(self, token: str) -> None:
        def submit() -> None:
            field = self.driver.find_element("id", "token")
            field.clear()
            field.send_keys(token)
            field.submit()

        await self.run(submit)

    async def screenshot(
        self, path: Path, size: tuple[int, int], *, phone: bool, whole: bool = True
    ) -> None:
        """The page at `size`'s width (a phone: its metrics, touch and all), whole or
        its first screen."""

        def shoot() -> None:
            width, height = size
            self.driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {
                    "width": width,
                    "height": height,
                    "deviceScaleFactor": 2 if phone else 1,
                    "mobile": phone,
                },
            )
            full = self.driver.execute_script("return document.documentElement.scrollHeight")
            if whole:
                self.driver.execute_cdp_cmd(
                    "Emulation.setDeviceMetricsOverride",
                    {
                        "width": width,
                        "height": full,
                        "deviceScaleFactor": 2 if phone else 1,
                        "mobile": phone,
                    },
                )
            self.driver.save_screenshot(str(path))

        await self.run(shoot)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def seven(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[OwnersRig]:
    # Set up before the tests' own logging fixture: log where the whole module can.
    configure_logging(level="info", fmt="console", stream=sys.stderr)
    async with owners_rig(tmp_path_factory.mktemp("page")) as rig:
        await rig.run_until(SEVEN + timedelta(seconds=1))  # the 07:00 cycle included
        yield rig


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    driver = _chromium()
    try:
        yield Browser(driver)
    finally:
        driver.quit()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def logged_in(seven: OwnersRig, browser: Browser) -> Browser:
    """Open /ui: the login form; a wrong token is refused; the read-only token opens it."""
    await browser.open(str(seven.url.join(seven.url.with_path("/ui"))))
    assert await browser.all("#token", "type") == ["password"]
    await browser.log_in("not-a-token")
    assert "not one Warden knows" in await browser.text("#login-error")
    await browser.log_in(READ_TOKEN)
    return browser


async def test_the_session_cookie_is_httponly_strict_and_holds_no_token(
    logged_in: Browser,
) -> None:
    cookies = await logged_in.run(logged_in.driver.get_cookies)
    [session] = [c for c in cookies if c["name"] == COOKIE]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert session["path"] == "/ui"
    assert READ_TOKEN not in session["value"]
    assert ADMIN_TOKEN not in session["value"]
    assert await logged_in.run(logged_in.driver.execute_script, "return document.cookie") == ""
    assert "read-only view" in await logged_in.text("header .meta")


async def test_the_page_breaks_no_rule_of_its_content_security_policy(
    seven: OwnersRig, logged_in: Browser
) -> None:
    """Its one style and one script run under their hashes: the countdowns tick, and the
    browser reports no refusal."""
    async with seven.http.get(seven.url.with_path("/ui")) as resp:
        policy = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'sha256-" in policy
    assert "unsafe-inline" not in policy
    logs = await logged_in.run(logged_in.driver.get_log, "browser")
    assert [entry for entry in logs if "Content Security Policy" in entry["message"]] == []
    # The script rewrote the first countdown against the server's clock (07:00).
    first = (await logged_in.all("#due .when"))[0]
    assert first.startswith("in ")


async def test_the_fleet_shows_each_provider_by_state(seven: OwnersRig, logged_in: Browser) -> None:
    assert seven.daemon.store is not None
    snapshots = await seven.daemon.store.snapshots()
    running = sum(
        1 for ws in snapshots.values() if ws.id.provider == "coder" and ws.state == "running"
    )
    stopped = sum(
        1 for ws in snapshots.values() if ws.id.provider == "coder" and ws.state == "stopped"
    )
    assert (running, stopped) == (2, 2)  # bob's two; alice stopped by Warden, carol by hand
    assert await logged_in.all("#fleet tr[data-provider] td.running") == [
        "1",  # agents: the platform's one "workspace"
        str(running),
    ]
    assert await logged_in.all("#fleet tr[data-provider] td.stopped") == ["0", str(stopped)]
    assert await logged_in.text("#tile-running .n") == f"{running + 1} / 5"


async def test_what_falls_due_next_names_the_rule_and_the_fact(
    seven: OwnersRig, logged_in: Browser
) -> None:
    """bob-long, kept alive until 08:05, is warned at 07:50 and stopped at 08:05."""
    items = await logged_in.all("#due li[data-policy='idle-dev']")
    [bob] = [i for i in items if "bob-long" in i]
    assert "idle-dev: idle_for 2h, warns 15m before" in bob
    held = KEEP_ALIVE_AT + timedelta(hours=8)
    assert f"kept alive until {held:%H:%M} UTC" in bob
    assert f"at {held:%Y-%m-%d %H:%M} UTC" in bob
    ats = await logged_in.all("#due .when", "data-at")
    assert ats == sorted(ats)  # soonest first
    policies = await logged_in.all("#due li", "data-policy")
    assert "max-lifetime" in policies  # bob-web's 20h lifetime, due at 19:00


async def test_budgets_show_spend_forecast_and_the_age_of_their_data(
    seven: OwnersRig, logged_in: Browser
) -> None:
    assert seven.daemon.store is not None
    standings = await BudgetKeeper(seven.daemon.store).current(
        seven.daemon.policies.budgets, now=seven.clock()
    )
    [org] = [s for s in standings if s.budget.name == "org-daily"]
    shown = await logged_in.all("#budgets .budget[data-budget='org-daily'] .spent")
    assert shown == [f"${org.spent.quantize(Decimal('0.01')):,}"]
    fresh = await logged_in.all("#budgets .budget[data-budget='org-daily'] .fresh")
    assert "oldest: feed:agent-runs" in fresh[0]
    assert "3h5m old" in fresh[0]  # read at 06:55, complete to 03:55
    assert await logged_in.all("#budgets .budget[data-budget='org-daily'] .fresh", "class") == [
        "fresh old"
    ]
    [alice] = await logged_in.all(
        "#budgets .budget[data-budget='team-daily'][data-scope='alice'] .fresh"
    )
    assert "oldest: observed:coder" in alice
    assert "projected" in (await logged_in.all("#budgets .budget .fig"))[1]


async def test_keep_alives_and_savings_are_shown(seven: OwnersRig, logged_in: Browser) -> None:
    assert seven.daemon.store is not None
    [kept] = await logged_in.all("#kept-alive li")
    assert "bob-long" in kept
    assert f"idle-dev until {KEEP_ALIVE_AT + timedelta(hours=8):%H:%M} UTC" in kept
    rows = await savings_of(
        seven.daemon.store,
        by="all",
        per="day",
        first=MIDNIGHT.date(),
        last=MIDNIGHT.date(),
        horizon=seven.daemon.policies.settings.savings_horizon,
        now=seven.clock(),
    )
    total = sum((r.avoided for r in rows), Decimal(0)).quantize(Decimal("0.01"))
    assert total == Decimal("13.50")  # alice's $2/h, stopped from 00:15 to 07:00
    assert await logged_in.text("#savings .total") == f"${total}"
    bars = await logged_in.all("#savings rect.bar", "data-avoided")
    assert len(bars) == 30
    assert bars[-1] == str(total)  # today, the last bar


async def test_recent_events_come_newest_first(seven: OwnersRig, logged_in: Browser) -> None:
    assert seven.daemon.store is not None
    newest = await seven.daemon.store.latest_events(15)
    assert await logged_in.all("#events li", "data-type") == [e.type for e in newest]


async def test_it_reads_well_on_a_laptop_and_a_phone(
    logged_in: Browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Screenshots at both widths; on the phone nothing runs off the side."""
    folder = tmp_path_factory.mktemp("screenshots")
    desktop, phone = folder / "status-desktop.png", folder / "status-phone.png"
    first_screen = folder / "status-phone-first-screen.png"
    await logged_in.screenshot(desktop, DESKTOP, phone=False)
    await logged_in.screenshot(first_screen, PHONE, phone=True, whole=False)
    await logged_in.screenshot(phone, PHONE, phone=True)
    overflow = await logged_in.run(
        logged_in.driver.execute_script,
        "return document.documentElement.scrollWidth - window.innerWidth",
    )
    assert overflow <= 0
    for shot in (desktop, phone, first_screen):
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert shot.stat().st_size > 20_000  # a page, not a blank
