"""Real-browser tests (Debian's Chromium via Playwright): the served workbench and the HTML report.

Skipped without /usr/bin/chromium, except under CI=true where that is a failure.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.app_fixtures import NAMES, make_checkpoints, peft_folder, roselora_file
from tests.browser import ARTIFACTS, browser, served_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EXCEPTION_TEXT = re.compile(r"Traceback|Exception:|Error:|StreamlitAPIException", re.I)


def test_upload_peft_folder_then_compare_in_chromium(tmp_path: Path) -> None:
    samples = tmp_path / "samples"
    samples.mkdir()
    roselora_file(samples / "roselora-sample.safetensors")
    peft = peft_folder(tmp_path / "peft")  # written by the real peft package
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with served_app(samples) as url, browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 2400})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.locator("[data-testid='stSidebar'] input[type='file']").set_input_files(
            [str(peft / "adapter_config.json"), str(peft / "adapter_model.safetensors")])
        page.get_by_text("Added peft-adapter").wait_for(timeout=60_000)
        page.locator("[data-testid='stSidebarNav'] a", has_text="Compare").click()
        page.get_by_role("heading", name="Compare checkpoints").wait_for(timeout=60_000)
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 5", timeout=90_000)
        page.wait_for_timeout(1000)
        main = page.locator("[data-testid='stMain']").inner_text()
        assert "peft-adapter" in main and "roselora-sample.safetensors" in main
        assert not EXCEPTION_TEXT.search(main), main[:2000]
        assert page.locator("[data-testid='stException']").count() == 0
        assert page.locator(".js-plotly-plot .heatmaplayer, .js-plotly-plot .hm").count() >= 1
        page.screenshot(path=str(ARTIFACTS / "compare.png"))
        assert not errors, errors


def test_report_opens_offline_and_hostile_names_stay_inert(tmp_path: Path) -> None:
    from app.cli import main

    ck = make_checkpoints(tmp_path / "ck")
    evil = roselora_file(tmp_path / "ck" / "evil.safetensors",
                         names=[*NAMES, "<script>alert(1)</script>", "</script><img src=x onerror=alert(2)>"])
    out = tmp_path / "report.html"
    assert main(["report", str(ck["lora"]), str(ck["roselora"]), str(ck["rosa"]), str(evil), "-o", str(out)]) == 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with browser() as b:
        ctx = b.new_context(offline=True, viewport={"width": 1300, "height": 1000})
        page = ctx.new_page()
        console, dialogs, requests = [], [], []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(out.as_uri())
        n = page.locator(".chart").count()
        assert n >= 10  # 4 overview charts, 3 heatmap rows, 2 Prop. 1 panels, compression
        page.wait_for_function(f"document.querySelectorAll(\"[data-rendered='1']\").length === {n}", timeout=60_000)
        page.wait_for_timeout(500)
        assert page.locator(".chart .main-svg").count() >= n
        assert not dialogs, dialogs
        assert not console, console
        assert requests == [out.as_uri()], requests
        assert "<script>alert(1)</script>" in page.locator("body").inner_text()  # shown as text
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    shutil.copy(out, ARTIFACTS / "report.html")
