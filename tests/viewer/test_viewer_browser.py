"""The page in a real browser: headless Chromium (the distribution's package) driven by
Playwright's Python API, against a viewer server following a real (tiny) training run.

Skipped only when no Chromium can be found, and never under CI=true (.ci/run installs it).
Set TOWNLET_SCREENSHOT=docs/img/viewer.png to refresh the README's screenshot.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from viewer_testkit import live_server

from townlet_agents.watch import build, parse_args
from townlet_env.schema import AFFORDANCES, METERS

CHROMIUM = os.environ.get("TOWNLET_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the browser tests (.ci/run installs chromium)")
    pytest.skip(f"{reason} (apt-get install chromium, pip install playwright)")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    if CHROMIUM is None:
        _unavailable("no chromium executable found")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def _number(page, selector: str) -> int:
    return int(page.inner_text(selector))


def _wait_ticks(page, above: int, timeout: float = 15000) -> None:
    page.wait_for_function(f"Number(document.getElementById('tick').textContent) > {above}", timeout=timeout)


def _canvas_colours(page, selector: str) -> int:
    """Distinct colours drawn on a canvas (a blank one has one)."""
    return page.eval_on_selector(selector, """c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, seen = new Set();
        for (let i = 0; i < d.length; i += 16) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
        return seen.size; }""")


def test_the_page_shows_towns_meters_and_q_values_live(browser, run_dir, curve_steps, tmp_path):
    hub = build(parse_args([f"run={run_dir}", "towns=16", "fps=20", "poll_seconds=0.2"]))
    with live_server(hub) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_selector("#status.up")
        assert page.inner_text("#status") == "connected"
        _wait_ticks(page, 2)

        # the grid of towns and the enlarged one are drawn
        assert page.locator("#towns .thumb").count() == 16
        assert _canvas_colours(page, "#town-canvas") > 8
        assert _canvas_colours(page, "#towns .thumb canvas") > 4
        assert "L3_temporal_mechanics" in page.inner_text("#level")
        assert "step_000000001600.pt" in page.inner_text("#policy")

        # meters, clock and Q-values render, and change from frame to frame
        assert page.locator("#meters .row").count() == 8 and page.locator("#qvalues .row").count() == 6
        first = {
            "energy": page.inner_text("[data-meter=energy] .value"),
            "clock": page.inner_text("#clock"),
            "q": page.inner_text("#qvalues"),
            "town": page.eval_on_selector("#town-canvas", "c => c.toDataURL()"),
        }
        assert first["clock"].endswith(":00") and page.inner_text("#money").startswith("$")
        assert page.inner_text("[data-meter=money] .value").startswith("$")
        tick = _number(page, "#tick")
        _wait_ticks(page, tick + 5)
        assert page.inner_text("[data-meter=energy] .value") != first["energy"]
        assert page.inner_text("#clock") != first["clock"]
        assert page.inner_text("#qvalues") != first["q"]
        # The town's picture changes once the agent moves; a barely trained agent may stand
        # still (WAIT, a multi-tick interaction) for a few ticks, so wait for it, bounded.
        page.wait_for_function("before => document.querySelector('#town-canvas').toDataURL() !== before",
                               arg=first["town"], timeout=20_000)
        assert page.locator("#qvalues .q.chosen").count() == 1
        assert page.inner_text("[data-q=WAIT] .value") != "masked"  # WAIT is never masked
        width = page.eval_on_selector("[data-meter=energy] .fill", "e => parseFloat(e.style.width)")
        assert 0 < width <= 100

        # the run's learning curve arrives from metrics.jsonl
        page.wait_for_function(f"view.curve.length === {len(curve_steps)}")
        assert page.is_visible("#curve")

        # pause stops the step counter; step advances it by exactly one
        page.click("#pause")
        page.wait_for_selector("#pause.active")
        paused = _number(page, "#tick")
        time.sleep(1.0)
        assert _number(page, "#tick") == paused
        page.click("#step")
        page.wait_for_function(f"document.getElementById('tick').textContent === '{paused + 1}'")
        time.sleep(0.5)
        assert _number(page, "#tick") == paused + 1

        # switch town: click a thumbnail, or use the selector
        page.click("#towns .thumb[data-town='5']")
        assert page.inner_text("#town-title") == "town 5"
        assert page.get_attribute("#towns .thumb.selected", "data-town") == "5"
        assert page.input_value("#town-select") == "5"
        page.select_option("#town-select", "9")
        assert page.inner_text("#town-title") == "town 9"

        # reset the chosen town
        page.click("#reset")
        page.wait_for_function("document.getElementById('steps').textContent.startsWith('0 /')")
        assert hub.sim.env.state.steps[9] == 0 and hub.sim.env.state.steps[0] > 0

        # what a frame can hold is drawn as such: a frame of this very server, edited while paused
        frame = hub.sim.frame()
        towns = frame["towns"]
        towns["progress"][9], towns["current"][9] = 2, AFFORDANCES.index("Job")
        towns["last"][9], towns["cause"][9] = 123, 2
        towns["meters"][9][METERS.index("health")] = 100
        towns["mask"][9] = "100001"
        page.evaluate("frame => receive(frame)", frame)
        assert page.inner_text("#interaction") == "Job 2/4"
        assert "last episode 123 steps (health)" in page.inner_text("#survival")
        assert page.get_attribute("#towns .thumb[data-town='9']", "class") == "thumb selected danger"
        assert page.inner_text("[data-q=LEFT] .value") == "masked" and page.locator("#qvalues .masked").count() == 4
        assert "low" in page.get_attribute("[data-meter=health] .fill", "class")

        # play resumes; the speed control reaches the server
        page.click("#play")
        _wait_ticks(page, paused + 3)
        page.fill("#speed", "30")
        page.dispatch_event("#speed", "input")
        page.wait_for_function("document.querySelector('#speed-label').textContent === '30'")
        deadline = time.monotonic() + 5
        while hub.fps != 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hub.fps == 30

        page.click("#towns .thumb[data-town='0']")
        _wait_ticks(page, _number(page, "#tick") + 3)
        shot = tmp_path / "viewer.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 20_000
        if os.environ.get("TOWNLET_SCREENSHOT"):
            shutil.copy(shot, Path(os.environ["TOWNLET_SCREENSHOT"]))
        assert errors == []
        page.close()


def test_many_tabs_all_stay_live(browser):
    hub = build(parse_args(["towns=16", "fps=30"]))
    with live_server(hub) as url:
        pages = [browser.new_page() for _ in range(4)]
        for page in pages:
            page.goto(url)
        start = hub.sim.tick
        for page in pages:
            _wait_ticks(page, start + 10)
        assert len(hub.clients) == 4
        assert "no Q-values" in pages[0].inner_text("#qvalues")  # the oracle has none
        for page in pages:
            page.close()


def test_the_page_says_disconnected_and_reconnects(browser):
    import socket

    hub = build(parse_args(["towns=4", "fps=30"]))
    with socket.socket() as probe:  # a free port to come back on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with live_server(hub, port) as url:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#status.up")
    page.wait_for_selector("#status.down", timeout=10000)
    assert "disconnected" in page.inner_text("#status")
    with live_server(build(parse_args(["towns=4", "fps=30"])), port):
        page.wait_for_selector("#status.up", timeout=15000)
        _wait_ticks(page, 1)
    page.close()
