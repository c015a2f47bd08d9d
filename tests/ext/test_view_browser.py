"""The page of ``miniagents view`` in a real browser (Debian's chromium driven by Playwright).

A program runs with a `ViewPublisher` while the page is open: the test waits for the call nodes and for a
streamed token on the page, clicks a node on the graph's canvas, and saves a screenshot.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason='the view extra is not installed: pip install "miniagents[view]"')
playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed")

from miniagents import InteractionContext, Message, MiniAgents, miniagent  # noqa: E402
from miniagents.ext.view import ViewPublisher  # noqa: E402
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
    await page.wait_for_timeout(400)  # (the layout runs 150 ms after the last new node)
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
        async with playwright_api.async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 720})
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
            finally:
                await browser.close()
