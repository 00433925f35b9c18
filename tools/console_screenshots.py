"""Remakes the console's screenshots in docs/: the underpass flood mid-incident on the
command centre's screen, and a crew's phone, from a real stack in Debian's Chromium.

    .venv/bin/python tools/console_screenshots.py
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from lifeline.devstack import Stack
from lifeline.scenario import SCENARIOS, Player, Scenario, Step
from playwright.sync_api import Browser, sync_playwright

DOCS = Path(__file__).resolve().parents[1] / "docs"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
#: The step after which the flood is mid-incident: declared, units on the way, orders open.
MID_INCIDENT = 15


def shoot(browser: Browser, stack: Stack, player: Player) -> None:
    incident = player._incident()
    wall = browser.new_context(ignore_https_errors=True, timezone_id="Asia/Shanghai",
                               viewport={"width": 1600, "height": 900}).new_page()
    wall.goto(stack.sign_in_link("duty-officer-chen", "operator", "commander"))
    wall.wait_for_selector("#connection.up")
    wall.locator(f"#board tr[data-incident='{incident.id}']").click()
    wall.wait_for_selector("#timeline li:nth-child(5)")
    wall.screenshot(path=str(DOCS / "console.png"))
    unit = incident.units[0].unit_id
    phone = browser.new_context(ignore_https_errors=True, timezone_id="Asia/Shanghai",
                                viewport={"width": 390, "height": 844}, is_mobile=True,
                                has_touch=True).new_page()
    phone.goto(stack.sign_in_link("crew-lead-sun", "crew",
                                  department=player.departments[unit]).replace(
        "/signin#", "/signin?next=/responder#"))
    phone.wait_for_selector("#unit option", state="attached")
    phone.get_by_label("Your unit").select_option(unit)
    phone.wait_for_selector("#assignment h2")
    phone.screenshot(path=str(DOCS / "console-responder.png"))
    print(f"wrote {DOCS / 'console.png'} and {DOCS / 'console-responder.png'}")


def main() -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("needs Debian's chromium (apt-get install chromium)")
    state = Path(tempfile.mkdtemp(prefix="lifeline-shots-"))
    try:
        with Stack(state, console=True, extra_env={"LIFELINE_FIELD_CLOCK": "observed"}
                   ) as stack, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=ARGS)
            player = Player(stack.addresses(), stack, say=lambda line: None)

            def after(index: int, step: Step) -> None:
                if index == MID_INCIDENT:
                    shoot(browser, stack, player)

            player.play(Scenario.load(SCENARIOS / "underpass_flood.toml"), after_step=after)
            player.close()
            browser.close()
    finally:
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
