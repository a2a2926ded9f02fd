"""The web page under ``/app/`` (issue 14), driven in Debian's headless Chromium through Playwright.

The end-to-end test runs the daemon with the real faster-whisper backend (the bundled tiny.en) on a minute
of synthesized lecture: log in, drop the recording on the page, watch progress and text arrive live, click
a segment and check where the player is, search a word and follow the hit, correct a segment and find the
correction in the export, and export every format. The others need no transcribing (their jobs are saved
the way the scheduler saves them). Every test also checks that the page asked nothing of any other server
and that the browser reported no Content-Security-Policy violation or script error.

Set ``LAZYD_SCREENSHOTS`` to a folder to keep screenshots of the main pages there (docs/screenshots holds
the ones the documentation shows).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import PASSWORD, Accounts
from media import tone, write_audio
from speech import LECTURE_SENTENCES, joined_speech_file

from lazyd import users
from lazyd.jobs.states import ChunkResult
from lazyd.store import Transcription, User
from lazyd.web import create_app
from lazyd.web.app_routes import APP_DIR, ASSETS, CONTENT_SECURITY_POLICY
from lazyd.web.keys import DAEMON, HASHER

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (./scripts/setup "
                                                             "installs it where it may use apt-get)")
SCREENSHOTS = os.environ.get("LAZYD_SCREENSHOTS")
WAIT_MS = 20_000
JOB_TIMEOUT_MS = 240_000
SEEK_SLACK_SECS = 1.5
"""A click plays from the segment's start; by the time the test reads the clock it may have moved on."""


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the store's two databases are tested elsewhere; this module tests the page."""
    return f"sqlite:///{tmp_path / 'lazyd.sqlite3'}"


class Browser:
    """One Chromium page on the daemon, recording what it fetched and what it complained about."""

    def __init__(self, page: Any, origin: str) -> None:
        self.page = page
        self.origin = origin
        self.fetched: list[str] = []
        self.complaints: list[str] = []
        self.sockets: list[Any] = []
        self.greetings = 0
        """How many ``hello`` messages the page's sockets received."""
        page.on("request", lambda request: self.fetched.append(request.url))
        page.on("console", lambda message: message.type == "error" and self.complaints.append(message.text))
        page.on("pageerror", lambda error: self.complaints.append(str(error)))
        page.on("websocket", self._watch_socket)
        page.on("filechooser", lambda chooser: None)  # subscribed now: expect_file_chooser's own is not awaited

    def _watch_socket(self, socket: Any) -> None:
        self.sockets.append(socket)
        socket.on("framereceived", lambda payload: setattr(self, "greetings", self.greetings + ('"hello"' in payload)))

    async def greeted(self) -> None:
        """Wait for the page's live socket to be open (its first message has come)."""
        for _ in range(WAIT_MS // 100):
            if self.greetings:
                return
            await self.page.wait_for_timeout(100)
        raise AssertionError("the page's WebSocket never opened")

    async def open(self, fragment: str = "") -> None:
        await self.page.goto(f"{self.origin}/app/{fragment}")

    async def log_in(self, username: str, password: str = PASSWORD) -> None:
        await self.open("#/login")
        await self.page.fill("#username", username)
        await self.page.fill("#password", password)
        await self.page.click("button[type=submit]")
        await self.page.wait_for_selector("nav:not([hidden])", timeout=WAIT_MS)

    async def until(self, expression: str, timeout_ms: int = WAIT_MS) -> None:
        """Wait until ``expression`` is true in the page (Playwright's wait_for_function needs eval, which
        the page's policy forbids)."""
        for _ in range(timeout_ms // 100):
            if await self.page.evaluate(expression):
                return
            await self.page.wait_for_timeout(100)
        raise AssertionError(f"never true: {expression}")

    async def shoot(self, name: str) -> None:
        if SCREENSHOTS:
            Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
            await self.page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)

    def assert_well_behaved(self, expected_errors: Callable[[str], bool] = lambda text: False) -> None:
        """Nothing fetched from another server; no CSP violation, script error or unexpected failure."""
        foreign = [url for url in self.fetched if not url.startswith((self.origin, "blob:", "data:"))]
        assert not foreign, foreign
        unexpected = [text for text in self.complaints if not expected_errors(text)]
        assert not unexpected, unexpected


@asynccontextmanager
async def chromium(client: TestClient, *, width: int = 1200, height: int = 900) -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        try:
            context = await browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
            yield Browser(await context.new_page(), str(client.make_url("/")).rstrip("/"))
        finally:
            await browser.close()


class Lectures:
    """Transcriptions with known segments and a real recording, saved the way the scheduler saves them."""

    def __init__(self, client: TestClient, tmp_path: Path) -> None:
        self.client = client
        self.tmp_path = tmp_path

    async def add(self, owner: User, title: str, segments: list[tuple[float, float, str]],
                  state: str = "completed", avg_logprob: float = -0.1) -> int:
        """A recording of a tone as long as the segments, which the decoder heard with ``avg_logprob``."""
        audio = write_audio(self.tmp_path / title, tone(440, segments[-1][1] + 1.0))
        job = await Transcription.acreate(creator=owner, audio_len_secs=segments[-1][1] + 1.0, chunk_size_secs=60.0,
                                          current_state="queued", filename=title, audio_path=str(audio))
        result = ChunkResult(0, 0.0, segments[-1][1] + 1.0, " ".join(text for _, _, text in segments),
                             [{"start": start, "end": end, "text": text, "avg_logprob": avg_logprob,
                               "no_speech_prob": 0.0} for start, end, text in segments])
        assert await self.client.app[DAEMON].states.save_chunk(job.id, None, result)
        await self.client.app[DAEMON].store.execute(
            Transcription.update(current_state=state).where(Transcription.id == job.id))
        return job.id


# -- served as a page ----------------------------------------------------------------------------------------

async def test_the_page_is_served_with_a_strict_policy_and_only_local_files(client):
    moved = await client.get("/app", allow_redirects=False)
    assert moved.status == 308 and moved.headers["Location"] == "app/"
    page = await client.get("/app/")
    assert page.status == 200 and page.content_type == "text/html"
    policy = page.headers["Content-Security-Policy"]
    assert policy == CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in policy and "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Referrer-Policy"] == "no-referrer"
    for name in ASSETS:
        asset = await client.get(f"/app/{name}")
        assert asset.status == 200 and asset.headers["X-Content-Type-Options"] == "nosniff", name
        assert "ETag" in asset.headers and asset.headers["Cache-Control"] == "no-cache"
    assert (await client.get("/app/../config.toml")).status == 404
    assert (await client.get("/app/nothing.js")).status == 422


def test_the_page_links_and_imports_nothing_but_its_own_files():
    """No CDN, font service or absolute address anywhere in the page's files; every module it imports is
    one of the files served."""
    for path in APP_DIR.iterdir():
        text = path.read_text()
        assert not re.search(r"(src|href)=\"(https?:)?//", text), path.name
        assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', ""), path.name
        assert "https://" not in text and "@import" not in text, path.name
        for imported in re.findall(r"from \"\./([^\"]+)\"", text):
            assert imported in ASSETS, (path.name, imported)
    scripts = "".join(path.read_text() for path in APP_DIR.glob("*.js"))
    assert not re.search(r"\.(inner|outer)HTML\s*=|insertAdjacentHTML|document\.write|eval\(", scripts)


# -- logging in ----------------------------------------------------------------------------------------------

@needs_chromium
async def test_a_wrong_password_is_refused_and_an_account_can_be_made_and_used(client, accounts):
    await accounts.create("alice")
    async with chromium(client) as browser:
        page = browser.page
        await browser.open()
        await page.wait_for_selector("#username")
        await browser.shoot("login")
        await page.fill("#username", "alice")
        await page.fill("#password", "Wrong_passw0rd")
        await page.click("button[type=submit]")
        alert = page.locator("[role=alert]")
        await alert.wait_for(timeout=WAIT_MS)
        assert "Incorrect username or password" in await alert.inner_text()

        await page.click("text=Create an account")
        await page.fill("#username", "newcomer")
        await page.fill("#password", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_selector("text=Nothing yet", timeout=WAIT_MS)
        assert await page.locator("nav .who").inner_text() == "newcomer"
        assert await page.locator("[data-admin]").is_hidden()

        await page.click("[data-sign-out]")
        await page.wait_for_selector("#username", timeout=WAIT_MS)
        assert await page.evaluate("localStorage.getItem('lazyd.session')") is None
    browser.assert_well_behaved(lambda text: "401" in text)
    assert await User.aget_or_none(User.username == "newcomer") is not None


@needs_chromium
async def test_where_registration_is_closed_the_page_offers_none(aiohttp_client, make_config, database_url):
    client = await aiohttp_client(create_app(make_config(database_url, open_registration=False)))
    async with chromium(client) as browser:
        await browser.open()
        await browser.page.wait_for_selector("#username")
        await browser.until("performance.getEntriesByType('resource').some((r) => r.name.endsWith('/auth/register'))")
        assert await browser.page.locator("text=Create an account").count() == 0
    browser.assert_well_behaved()


@needs_chromium
async def test_a_stale_access_token_is_renewed_and_a_void_session_leads_back_to_the_login(client, accounts):
    await accounts.create("alice")
    async with chromium(client) as browser:
        page = browser.page
        await browser.log_in("alice")
        session = await page.evaluate("JSON.parse(localStorage.getItem('lazyd.session'))")
        stale = {**session, "access_token": session["access_token"][:-4] + "AAAA"}  # a forged signature
        await page.evaluate("(session) => localStorage.setItem('lazyd.session', JSON.stringify(session))", stale)
        await page.reload()
        await page.wait_for_selector("text=Your transcriptions", timeout=WAIT_MS)
        renewed = await page.evaluate("JSON.parse(localStorage.getItem('lazyd.session'))")
        assert renewed["access_token"] != stale["access_token"]

        alice = await users.find_user("alice")
        await users.update_user(client.app[HASHER], alice, users.UserChanges(password="Another_passw0rd"))
        await page.reload()  # every token issued before the change is void
        await page.wait_for_selector("#username", timeout=WAIT_MS)
        assert await page.evaluate("localStorage.getItem('lazyd.session')") is None
    browser.assert_well_behaved(lambda text: "401" in text)


# -- reading, searching, correcting --------------------------------------------------------------------------

@needs_chromium
async def test_a_search_hit_opens_its_lecture_at_that_moment(client, accounts, tmp_path):
    alice = await accounts.create("alice")
    lectures = Lectures(client, tmp_path)
    await lectures.add(alice, "waves.wav", [(0.0, 4.0, "Waves carry energy."), (4.0, 9.0, "Light is a wave.")])
    thermo = await lectures.add(alice, "thermo.wav", [
        (0.0, 5.0, "Heat engines convert heat into work."), (5.0, 11.0, "The Carnot cycle is reversible."),
        (11.0, 17.0, "Entropy never decreases in an isolated system.")])
    async with chromium(client) as browser:
        page = browser.page
        await browser.log_in("alice")
        await page.click("nav >> text=Search")
        await page.fill("#q", "entropy")
        await page.keyboard.press("Enter")
        hit = page.locator(".hits li").first
        await hit.wait_for(timeout=WAIT_MS)
        assert await page.locator(".hits li").count() == 1
        assert await hit.locator("mark").inner_text() == "Entropy"
        assert "thermo.wav" in await hit.inner_text() and "0:11" in await hit.inner_text()
        await browser.shoot("search")

        await hit.locator("a").click()
        playing = page.locator(".segment.playing")
        await playing.wait_for(timeout=WAIT_MS)
        assert page.url.endswith(f"#/t/{thermo}?at=11")
        assert await playing.locator(".text").inner_text() == "Entropy never decreases in an isolated system."
        assert abs(await page.evaluate("document.querySelector('audio').currentTime") - 11.0) < SEEK_SLACK_SECS
    browser.assert_well_behaved()


@needs_chromium
async def test_a_correction_and_a_label_are_kept_exported_and_can_be_undone(client, accounts, tmp_path):
    alice = await accounts.create("alice")
    job_id = await Lectures(client, tmp_path).add(alice, "names.wav", [
        (0.0, 4.0, "Today professor Kowalsky talks."), (4.0, 8.0, "Any questions?")])
    async with chromium(client) as browser:
        page = browser.page
        await browser.log_in("alice")
        await browser.open(f"#/t/{job_id}")
        first = page.locator(".segment").first
        await first.wait_for(timeout=WAIT_MS)
        await first.locator(".edit").click()
        await page.fill(".correction textarea", "Today professor Kowalski talks.")
        await page.fill(".correction input", "Introduction")
        await page.keyboard.press("Control+Enter")
        await page.wait_for_selector(".segment.edited", timeout=WAIT_MS)
        assert await first.locator(".label").inner_text() == "Introduction"
        assert await first.locator(".text").inner_text() == "Today professor Kowalski talks."

        async with page.expect_download() as waiting:
            await page.click("[data-format=srt]")
        download = await waiting.value
        subtitles = " ".join(Path(await download.path()).read_text().split())  # cues wrap their lines
        assert "[Introduction] Today professor Kowalski talks." in subtitles
        assert download.suggested_filename.endswith(".srt")

        await first.locator(".edit").click()
        await page.click("text=Restore the machine's text")
        await page.wait_for_selector(".segment:not(.edited) >> text=Kowalsky", timeout=WAIT_MS)
        assert await first.locator(".label").inner_text() == "Introduction"
    browser.assert_well_behaved()


@needs_chromium
async def test_text_the_decoder_was_unsure_of_is_marked_as_doubtful(client, accounts, tmp_path):
    alice = await accounts.create("alice")
    lectures = Lectures(client, tmp_path)
    sure = await lectures.add(alice, "clear.wav", [(0.0, 3.0, "Clearly said.")], avg_logprob=-0.1)
    unsure = await lectures.add(alice, "mumbled.wav", [(0.0, 3.0, "Mumbled words.")], avg_logprob=-1.2)
    async with chromium(client) as browser:
        await browser.log_in("alice")
        shown = {}
        for job_id in (sure, unsure):
            await browser.open(f"#/t/{job_id}")
            segment = browser.page.locator(".segment")
            await segment.wait_for(timeout=WAIT_MS)
            shown[job_id] = (await segment.get_attribute("class"), await segment.get_attribute("title"))
    browser.assert_well_behaved()
    assert "doubtful" not in shown[sure][0] and shown[sure][1] is None
    assert "doubtful" in shown[unsure][0] and shown[unsure][1] == "The recogniser was unsure here (30%)"


@needs_chromium
async def test_another_users_transcription_is_not_shown(client, accounts, tmp_path):
    alice, _ = await accounts.create("alice"), await accounts.create("bobby")
    job_id = await Lectures(client, tmp_path).add(alice, "private.wav", [(0.0, 3.0, "Alice's own words.")])
    async with chromium(client) as browser:
        await browser.log_in("bobby")
        await browser.open(f"#/t/{job_id}")
        alert = browser.page.locator("[role=alert]")
        await alert.wait_for(timeout=WAIT_MS)
        assert await alert.inner_text() == "There is no such transcription."
        assert await browser.page.locator("text=Alice's own words.").count() == 0
    browser.assert_well_behaved(lambda text: "404" in text)


# -- live ----------------------------------------------------------------------------------------------------

@needs_chromium
async def test_the_list_follows_a_running_job_and_catches_up_after_the_connection_drops(client, accounts, tmp_path):
    """The daemon's own events (published as its scheduler does) move the progress bar; events sent while
    the page's socket was down arrive once it is back (``?stream&since``)."""
    alice = await accounts.create("alice")
    job_id = await Lectures(client, tmp_path).add(alice, "running.wav", [(0.0, 4.0, "So far.")], "in_progress")
    events = client.app[DAEMON].events
    async with chromium(client) as browser:
        page = browser.page
        await browser.log_in("alice")
        row = page.locator(f"tr[data-id='{job_id}']")
        await row.locator(".state.in_progress").wait_for(timeout=WAIT_MS)
        await browser.greeted()
        events.publish(alice.id, "progress", transcription_id=job_id, done_secs=2.5, total_secs=5.0, eta_secs=90)
        await row.locator("text=50% · about 2 min left").wait_for(timeout=WAIT_MS)

        await ws_close_all(client)
        events.publish(alice.id, "progress", transcription_id=job_id, done_secs=4.0, total_secs=5.0, eta_secs=5)
        await row.locator("text=80% · about 5 s left").wait_for(timeout=WAIT_MS)
        events.publish(alice.id, "state", transcription_id=job_id, state="completed", error_count=0)
        await row.locator(".state.completed").wait_for(timeout=WAIT_MS)
        assert await row.locator("progress").count() == 0
        assert len(browser.sockets) == 2 and browser.greetings == 1  # one at a time; the second resumed
    browser.assert_well_behaved()


async def ws_close_all(client: TestClient) -> None:
    """What a daemon restart or a network drop does to the page's WebSocket."""
    from lazyd.web.ws import close_sockets

    await close_sockets(client.app)


@needs_chromium
async def test_a_job_is_cancelled_retried_and_deleted_from_its_page(client, accounts, tmp_path):
    alice = await accounts.create("alice")
    job_id = await Lectures(client, tmp_path).add(alice, "unwanted.wav", [(0.0, 4.0, "Wrong file.")], "queued")
    async with chromium(client) as browser:
        page = browser.page
        await browser.log_in("alice")
        await browser.open(f"#/t/{job_id}")
        await page.click(".actions >> text=Cancel", timeout=WAIT_MS)
        await page.wait_for_selector(".head .state.completed_partially", timeout=WAIT_MS)  # it had a chunk done
        await page.click(".actions >> text=Retry")
        await page.wait_for_selector(".head .state.queued", timeout=WAIT_MS)
        await page.click(".actions >> text=Delete")
        await page.click(".actions >> text=Really delete it and its recording?")
        await page.wait_for_selector("text=Transcribe a recording", timeout=WAIT_MS)
        assert await page.locator(f"tr[data-id='{job_id}']").count() == 0
    browser.assert_well_behaved()
    assert await Transcription.aget_or_none(Transcription.id == job_id) is None


# -- admins --------------------------------------------------------------------------------------------------

@needs_chromium
async def test_an_admin_blocks_a_user_lets_another_upload_and_makes_a_third_an_admin(client, accounts):
    await accounts.create("adminka", role="admin")
    for name in ("alice", "bobby", "carol"):
        await accounts.create(name)
    async with chromium(client) as browser:
        page = browser.page
        await browser.log_in("adminka")
        await page.click("nav >> text=Users")
        await page.wait_for_selector("tr[data-user=alice]", timeout=WAIT_MS)
        await browser.shoot("users")
        await page.uncheck("tr[data-user=alice] >> [aria-label='Active: alice']")
        await page.wait_for_selector("text=alice: saved.", timeout=WAIT_MS)
        await page.check("tr[data-user=bobby] >> [aria-label='May upload: bobby']")
        await page.wait_for_selector("text=bobby: saved.", timeout=WAIT_MS)
        await page.select_option("tr[data-user=carol] >> select", "admin")
        await page.wait_for_selector("text=carol: saved.", timeout=WAIT_MS)
    browser.assert_well_behaved()
    changed = {user.username: user for user in await client.app[DAEMON].store.list(User.select())}
    assert not changed["alice"].active and changed["bobby"].can_interact and changed["carol"].role == "admin"
    assert changed["bobby"].active and changed["carol"].active and not changed["alice"].can_interact


@needs_chromium
async def test_a_user_sees_no_admin_page(client, accounts):
    await accounts.create("alice")
    async with chromium(client) as browser:
        await browser.log_in("alice")
        await browser.open("#/admin")
        await browser.page.wait_for_selector("text=Transcribe a recording", timeout=WAIT_MS)
        assert await browser.page.locator("table.users").count() == 0
    browser.assert_well_behaved()


# -- on a phone, and by keyboard -----------------------------------------------------------------------------

@needs_chromium
async def test_on_a_phone_nothing_is_wider_than_the_screen(client, accounts, tmp_path):
    alice = await accounts.create("alice", can_interact=True)
    lectures = Lectures(client, tmp_path)
    job_id = await lectures.add(alice, "a lecture with a rather long name about thermodynamics.wav",
                                [(0.0, 4.0, "Heat flows from hot to cold, " * 6)])
    async with chromium(client, width=375, height=740) as browser:
        page = browser.page
        await browser.log_in("alice")
        for name, fragment, ready in (("list", "#/", ".jobs tr[data-id]"), ("transcript", f"#/t/{job_id}", ".segment"),
                                      ("search", "#/search?q=heat", ".hits li")):
            await browser.open(fragment)
            await page.wait_for_selector(ready, timeout=WAIT_MS)
            assert await page.evaluate("document.documentElement.scrollWidth") <= 375, fragment
            await browser.shoot(f"phone-{name}")
    browser.assert_well_behaved()


@needs_chromium
async def test_the_keyboard_reaches_the_upload_and_plays_a_segment(client, accounts, tmp_path):
    alice = await accounts.create("alice", can_interact=True)
    job_id = await Lectures(client, tmp_path).add(alice, "keys.wav", [(0.0, 3.0, "One."), (3.0, 7.0, "Two.")])
    async with chromium(client) as browser:
        page = browser.page
        await browser.log_in("alice")
        await page.wait_for_selector(".drop", timeout=WAIT_MS)
        for _ in range(12):
            await page.keyboard.press("Tab")
            if await page.evaluate("document.activeElement.classList.contains('drop')"):
                break
        else:
            raise AssertionError("Tab never reached the drop zone")
        async with page.expect_file_chooser() as choosing:
            await page.keyboard.press("Enter")
        await (await choosing.value).set_files(write_audio(tmp_path / "picked.wav", tone(300, 12.0)))
        await page.wait_for_selector(".card [role=status] >> text=picked.wav", timeout=WAIT_MS)
        assert await page.locator(".card [role=status]").inner_text() == "picked.wav is queued."
        await page.wait_for_selector("tr[data-id] >> text=picked.wav", timeout=WAIT_MS)

        await browser.open(f"#/t/{job_id}")
        second = page.locator(".segment").nth(1)
        await second.wait_for(timeout=WAIT_MS)
        await second.locator(".time").focus()
        await page.keyboard.press("Enter")
        await page.wait_for_selector(".segment.playing >> text=Two.", timeout=WAIT_MS)
        assert abs(await page.evaluate("document.querySelector('audio').currentTime") - 3.0) < SEEK_SLACK_SECS
    browser.assert_well_behaved()


# -- the whole way, with the real model ----------------------------------------------------------------------

@pytest.fixture
async def transcribing(aiohttp_client: Callable, make_config: Callable, database_url: str) -> TestClient:
    """The daemon with its scheduler and one faster-whisper worker on the bundled tiny.en."""
    config = make_config(database_url, sections={
        "transcription": {"backend": "faster-whisper", "device": "cpu", "cpu_threads": 2, "chunk_secs": 25.0,
                          "cut_window_secs": 4.0},
        "limits": {"min_audio_secs": 1.0},
        "scheduler": {"enabled": True, "poll_secs": 0.2, "lease_secs": 30.0, "stall_timeout_secs": 120.0},
    })
    return await aiohttp_client(create_app(config))


async def drop_file(page: Any, path: Path) -> None:
    """What dragging a file from the desktop onto the drop zone does."""
    transfer = await page.evaluate_handle("""([name, data]) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, {type: "audio/wav"}));
        return transfer;
    }""", [path.name, base64.b64encode(path.read_bytes()).decode()])
    await page.dispatch_event(".drop", "drop", {"dataTransfer": transfer})


async def throttled_upload(page: Any, path: Path) -> list[float]:
    """Drop ``path`` on the page over a link slow enough (Chromium's own throttling) to watch the upload's
    progress bar; return the values it showed."""
    devtools = await page.context.new_cdp_session(page)
    await devtools.send("Network.enable")
    await devtools.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": path.stat().st_size / 3})
    await drop_file(page, path)
    shown = []
    bar = page.locator("progress[aria-label^=Uploading]")
    while await bar.count():
        shown.append(float(await bar.evaluate("bar => bar.value")))
        await page.wait_for_timeout(100)
    await devtools.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    return shown


async def watch_until_done(page: Any) -> list[tuple[str, int, str]]:
    """What the transcript view showed while the job ran: (state, segments shown, progress caption)."""
    seen = []
    for _ in range(JOB_TIMEOUT_MS // 100):
        state = await page.locator(".head .state").inner_text()
        shown = await page.locator(".segment").count()
        caption = await page.locator(".head .caption").all_inner_texts()
        seen.append((state, shown, caption[0] if caption else ""))
        if state == "Done":
            return seen
        assert state not in ("Failed", "Partly done", "Cancelled"), seen[-1]
        await page.wait_for_timeout(100)
    raise AssertionError(f"the job never finished: {seen[-1]}")


@needs_chromium
async def test_a_lecture_from_dropping_it_on_the_page_to_its_exports(transcribing, speech_cache, tmp_path):
    client = transcribing
    await Accounts(client).create("alice", can_interact=True)
    lecture = tmp_path / "Thermodynamics, lecture 3.wav"
    shutil.copy(joined_speech_file(speech_cache, LECTURE_SENTENCES, pause_secs=1.0), lecture)
    async with chromium(client) as browser:
        page = browser.page
        await browser.log_in("alice")

        uploading = await throttled_upload(page, lecture)
        assert any(0 < fraction < 1 for fraction in uploading), uploading  # the bar moved as the file went
        await page.click("text=Open it", timeout=WAIT_MS)
        seen = await watch_until_done(page)
        assert any(state == "Transcribing" and shown > 0 for state, shown, _ in seen), seen  # text came live
        assert any(state == "Transcribing" and re.fullmatch(r"[1-9]\d?% · about .+ left", caption)
                   for state, _, caption in seen), seen  # the bar moved, with the time left
        segments = page.locator(".segment")
        await browser.until("!document.querySelector('.segment.provisional')")
        texts = await segments.locator(".text").all_inner_texts()
        assert len(texts) == len(set(texts)) >= len(LECTURE_SENTENCES) - 2  # each said once
        shown_text = " ".join(texts).lower()
        assert "thermodynamics" in shown_text and "refrigerator" in shown_text
        await page.wait_for_selector(".head >> text=language en", timeout=WAIT_MS)
        await browser.shoot("transcript")

        fourth = segments.nth(3)
        start = float(await fourth.get_attribute("data-start"))
        await browser.until("document.querySelector('audio').readyState >= 1")
        await fourth.locator(".text").click()
        await page.wait_for_selector(".segment:nth-child(4).playing", timeout=WAIT_MS)
        now = await page.evaluate("document.querySelector('audio').currentTime")
        assert start - 0.05 <= now < start + SEEK_SLACK_SECS

        await page.click("nav >> text=Search")
        await page.fill("#q", "copper")
        await page.keyboard.press("Enter")
        await page.locator(".hits li a").first.click()
        await page.wait_for_selector(".segment.playing >> text=/copper/i", timeout=WAIT_MS)

        playing = page.locator(".segment.playing")
        await playing.locator(".edit").click()
        await page.fill(".correction textarea", "Imagine two blocks of brass placed side by side.")
        await page.click(".correction button[type=submit]")
        await page.wait_for_selector(".segment.edited >> text=brass", timeout=WAIT_MS)

        exported = {}
        for button in await page.locator(".exports button").all():
            async with page.expect_download() as waiting:
                await button.click()
            download = await waiting.value
            exported[await button.get_attribute("data-format")] = Path(await download.path()).read_bytes()
        await page.click("nav >> text=Transcriptions")
        await page.wait_for_selector(".jobs .state.completed", timeout=WAIT_MS)
        await browser.shoot("transcriptions")
    browser.assert_well_behaved()
    formats = (await (await client.get("/formats")).json())["formats"]
    assert set(exported) == {format_["name"] for format_ in formats}
    readable = {name: " ".join(exported[name].decode().split()) for name in ("txt", "srt", "vtt", "json", "md")}
    for name, text in readable.items():
        assert "blocks of brass" in text and "copper" not in text, name
    assert exported["docx"].startswith(b"PK")
