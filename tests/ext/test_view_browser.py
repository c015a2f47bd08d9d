"""The page of ``miniagents view`` in a real browser (Debian's chromium driven by Playwright).

A program runs with a `ViewPublisher` while the page is open: the test waits for the call nodes and for a
streamed token on the page, clicks a node on the graph's canvas, and saves a screenshot. Other tests open a big run,
a run whose calls come before their parent's, and a page of another site that tries to publish.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason='the view extra is not installed: pip install "miniagents[view]"')
playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed")

from miniagents import InteractionContext, Message, MiniAgents, miniagent  # noqa: E402
from miniagents.ext.view import LiveRuns, ViewPublisher  # noqa: E402
from tests.ext.view_server import view_server  # noqa: E402

CHROMIUM = os.environ.get("MINIAGENTS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT_DIR = Path(os.environ.get("MINIAGENTS_TEST_ARTIFACTS", "test-artifacts"))

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and shutil.which("chromium") is None,
    reason="chromium is not installed (apt-get install chromium; .ci/run does it)",
)


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


def watch_problems(page: Any) -> list[str]:
    """What the page reports as wrong from now on: console errors and warnings, uncaught errors, failed requests."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    return problems


TOKENS = ["The ", "quick ", "brown ", "fox ", "jumps ", "over ", "the ", "lazy ", "dog."]


@miniagent
async def writer_agent(ctx: InteractionContext, gate: Any) -> None:
    async def tokens(_: dict[str, Any]) -> Any:
        yield TOKENS[0]
        await gate.wait()  # the rest streams once the page has shown the first token
        for token in TOKENS[1:]:
            await asyncio.sleep(0.05)
            yield token

    ctx.reply(Message.promise(start_asap=True, message_token_streamer=tokens, role="assistant"))


@miniagent
async def helper_agent(ctx: InteractionContext) -> None:
    ctx.reply(f"helped with {len(await ctx.message_promises)} messages")


@miniagent
async def failing_agent(ctx: InteractionContext) -> None:
    raise ValueError("this one fails")


@miniagent
async def lead_agent(ctx: InteractionContext, gate: Any) -> None:
    ctx.reply(helper_agent.inquire(ctx.message_promises))
    ctx.reply(writer_agent.fork(gate=gate).inquire("write"))
    try:
        await failing_agent.inquire()
    except ValueError:
        pass


async def check_live_page(page: Any, gate: asyncio.Event) -> None:
    # the nodes appear while the run goes on (WRITER_AGENT is still streaming)
    await page.wait_for_function(
        "() => window.miniagentsView && window.miniagentsView.cy.nodes().length === 4", timeout=15000
    )
    labels = await page.evaluate("() => window.miniagentsView.cy.nodes().map(n => n.data('label'))")
    assert sorted(labels) == ["FAILING_AGENT", "HELPER_AGENT", "LEAD_AGENT", "WRITER_AGENT"]
    edges = await page.evaluate(
        "() => window.miniagentsView.cy.edges().map(e => e.target().data('label') + '<' + e.source().data('label'))"
    )
    assert sorted(edges) == ["FAILING_AGENT<LEAD_AGENT", "HELPER_AGENT<LEAD_AGENT", "WRITER_AGENT<LEAD_AGENT"]
    await page.wait_for_selector("#calls li[data-status='failed']", timeout=15000)

    # click the WRITER_AGENT node on the canvas: its reply streams into the message panel
    await page.wait_for_function("() => window.miniagentsView.idle()", timeout=15000)  # (laid out)
    box = await page.locator("#graph").bounding_box()
    assert box is not None
    position = await page.evaluate(
        "() => { const n = window.miniagentsView.cy.nodes().filter(n => n.data('label') === "
        "'WRITER_AGENT')[0]; return n.renderedPosition(); }"
    )
    await page.mouse.click(box["x"] + position["x"], box["y"] + position["y"])
    await page.wait_for_function(
        "() => document.querySelector('#details h3')?.textContent.startsWith('WRITER_AGENT')",
        timeout=15000,
    )
    await page.wait_for_function(
        "() => document.getElementById('message-text').textContent.startsWith('The ')", timeout=15000
    )
    assert await page.locator("#message-text").text_content() == "The "  # the rest waits
    assert await page.locator("#message-meta").text_content() == "streaming…"
    gate.set()
    await page.wait_for_function(
        "() => document.getElementById('message-text').textContent.includes('fox')", timeout=15000
    )


async def test_page_shows_the_live_call_tree_and_streams_tokens() -> None:
    gate = asyncio.Event()
    with view_server() as (url, _):
        async with chromium() as browser:
            page = await browser.new_page(viewport={"width": 1280, "height": 720})
            problems = watch_problems(page)
            await page.goto(url)
            async with MiniAgents(observers=[ViewPublisher(url=url, run_name="browser test", flush_interval=0.02)]):
                replies = lead_agent.fork(gate=gate).inquire("please")  # (fork: an Event cannot be frozen)
                try:
                    await check_live_page(page, gate)
                finally:
                    gate.set()  # (so that a failed check cannot leave the run waiting forever)
                messages = await replies
            assert [str(m) for m in messages] == ["helped with 1 messages", "".join(TOKENS)]
            await page.wait_for_function(
                "() => document.getElementById('message-text').textContent === 'The quick brown fox jumps over"
                " the lazy dog.'",
                timeout=15000,
            )
            await page.wait_for_selector("#calls li[data-status='finished']", timeout=15000)
            await page.wait_for_function(  # every call's end reaches the page (events arrive in batches)
                "() => document.querySelectorAll(\"#calls li[data-status='running']\").length === 0",
                timeout=15000,
            )
            assert await page.locator("#calls li[data-status='running']").count() == 0
            colors = await page.evaluate(
                "() => Object.fromEntries(window.miniagentsView.cy.nodes().map(n => [n.data('label'),"
                " n.data('color')]))"
            )
            assert colors["FAILING_AGENT"] == "#ef4444" and colors["LEAD_AGENT"] == "#10b981"
            await asyncio.to_thread(SCREENSHOT_DIR.mkdir, parents=True, exist_ok=True)
            await page.screenshot(path=str(SCREENSHOT_DIR / "view.png"))
            assert problems == []  # (no missing favicon, no warning from cytoscape)


def fan_out(leaves: int, failed: int) -> LiveRuns:
    """A run of one call with ``leaves`` finished children, the one numbered ``failed`` failed."""
    live = LiveRuns()
    events: list[dict[str, Any]] = [{"type": "call", "id": "fan", "parent": None, "alias": "FAN", "started_at": 1.0}]
    for i in range(leaves):
        events.append({"type": "call", "id": f"leaf{i}", "parent": "fan", "alias": f"LEAF_{i}", "started_at": 1.0})
    for i in range(leaves):
        events.append({"type": "status", "id": f"leaf{i}", "status": "failed" if i == failed else "finished"})
    live.ingest({"run": "big", "name": "big run", "started_at": 1.0, "events": events})
    return live


async def test_a_big_run_draws_a_bounded_graph_and_lists_every_call() -> None:
    """5,000 calls: the graph draws 200 of the fan-out and a "+4800 more" node (a canvas redraws every node on
    every change, and the old layout took minutes); the list still has every call."""
    with view_server(fan_out(5000, failed=4321)) as (url, _):
        async with chromium() as browser:
            page = await browser.new_page(viewport={"width": 1280, "height": 720})
            problems = watch_problems(page)
            await page.goto(url)
            await page.wait_for_function(
                "() => window.miniagentsView.state.calls.size === 5001 && window.miniagentsView.idle()",
                timeout=60000,
            )
            assert await page.locator("#calls li").count() == 5001
            assert await page.text_content("#summary") == "5001 calls: 1 running, 4999 finished, 1 failed"
            graph = await page.evaluate(
                "() => { const cy = window.miniagentsView.cy; return [cy.nodes().length, cy.edges().length,"
                " cy.nodes('[more]').map(n => [n.data('label'), n.data('color')])]; }"
            )
            assert graph == [1 + 200 + 1, 200 + 1, [["+4800 more", "#ef4444"]]]  # (red: one of them failed)
            # a call that the graph counts in "+4800 more" selects that node
            await page.click("#calls li[data-call-id='leaf4321']")
            await page.wait_for_function(
                "() => document.querySelector('#details h3')?.textContent === 'LEAF_4321 (failed)'", timeout=15000
            )
            selected = await page.evaluate("() => window.miniagentsView.cy.$(':selected').map(n => n.data('label'))")
            assert selected == ["+4800 more"]
            assert problems == []


async def test_a_call_that_comes_before_its_parent_is_drawn_under_it() -> None:
    """After a lost batch the publisher sends the calls still running again: their children can come first."""
    live = LiveRuns()
    live.ingest(
        {
            "run": "late",
            "events": [
                {"type": "call", "id": "kid", "parent": "boss", "alias": "KID"},
                {"type": "call", "id": "grandkid", "parent": "kid", "alias": "GRANDKID"},
                {"type": "call", "id": "boss", "parent": None, "alias": "BOSS"},
            ],
        }
    )
    with view_server(live) as (url, _):
        async with chromium() as browser:
            page = await browser.new_page(viewport={"width": 1280, "height": 720})
            await page.goto(url)
            await page.wait_for_function(
                "() => window.miniagentsView.state.calls.size === 3 && window.miniagentsView.idle()", timeout=15000
            )
            edges = await page.evaluate(
                "() => window.miniagentsView.cy.edges().map(e => e.source().data('label') + '>' +"
                " e.target().data('label'))"
            )
            assert sorted(edges) == ["BOSS>KID", "KID>GRANDKID"]
            indents = await page.eval_on_selector_all("#calls li", "items => items.map(i => i.style.paddingLeft)")
            assert indents == ["16px", "28px", "4px"]  # KID, GRANDKID, BOSS: in start order, indented by depth


async def test_a_page_of_another_site_cannot_publish() -> None:
    """Cross-site request forgery: any page may post a text or a form anywhere (no CORS preflight)."""
    # the other site: another view server (another port is another origin; a page Playwright made up would not be
    # allowed to reach 127.0.0.1 at all)
    with view_server() as (url, live), view_server() as (other_site, _):
        async with chromium() as browser:
            page = await browser.new_page()
            await page.goto(other_site)
            sent = await page.evaluate(
                """async (url) => {
                  const body = JSON.stringify({ run: "forged", started_at: 1e300, events: [] });
                  const sent = [];
                  const tries = [["no-cors", "text/plain"], ["no-cors", "application/x-www-form-urlencoded"],
                                 ["cors", "application/json"]];
                  for (const [mode, type] of tries) {
                    const headers = { "Content-Type": type };
                    try {
                      await fetch(url + "/api/ingest", { method: "POST", mode, headers, body });
                      sent.push(type);
                    } catch (error) {}  // (JSON needs the server's consent to a preflight request: it gives none)
                  }
                  return sent;
                }""",
                url,
            )
            assert sent == ["text/plain", "application/x-www-form-urlencoded"]  # (opaque answers: 403)
    assert live.list_runs() == []


async def test_html_in_names_errors_and_texts_is_shown_as_text() -> None:
    live = LiveRuns()
    html = {
        "name": "<img src=x onerror='window.injected=1'>run",
        "alias": "<b>BOLD</b>",
        "error": "ValueError: <script>window.injected=2</script>& <i>not</i>",
        "text": "<img src=y onerror='window.injected=3'><i>hi</i>",
    }
    live.ingest(
        {
            "run": "html",
            "name": html["name"],
            "events": [
                {"type": "call", "id": "c", "parent": None, "alias": html["alias"]},
                {"type": "link", "call": "c", "direction": "reply", "key": "m"},
                {"type": "text", "key": "m", "text": html["text"]},
                {"type": "text", "key": "m", "done": True, "error": html["error"], "class": "Message"},
                {"type": "status", "id": "c", "status": "failed", "error": html["error"]},
            ],
        }
    )
    with view_server(live) as (url, _):
        async with chromium() as browser:
            page = await browser.new_page(viewport={"width": 1280, "height": 720})
            problems = watch_problems(page)
            await page.goto(url)
            await page.click("#calls li[data-call-id='c']")
            await page.wait_for_function(
                "() => document.getElementById('message-meta').textContent.startsWith('Message')", timeout=15000
            )
            assert await page.text_content("#calls li") == html["alias"]
            assert await page.text_content("#details h3") == html["alias"] + " (failed)"
            assert await page.text_content("#details .error") == html["error"]
            assert await page.text_content("#message-text") == html["text"]
            assert await page.text_content("#message-meta") == "Message — " + html["error"]
            assert (await page.text_content("#runs option") or "").startswith(html["name"])
            made = await page.evaluate(
                "() => [window.injected, document.querySelectorAll('aside b, aside i, aside img, aside script,"
                " header img').length]"
            )
            assert made == [None, 0]
            assert problems == []
