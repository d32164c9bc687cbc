"""The workbench at real scale, in Chromium: two Llama-2-7B-shaped PEFT LoRAs (32 blocks × 7 projections =
224 modules each, 4096×4096 and 4096×11008 shapes, bf16) opened with ``rankscope app PATH PATH``.

Inspect, Compare and Report must show module names a person can read (not the prefix every module
shares), the model map with 32 × 7 cells (read from the plotly figure in the page), and no exception
text. Screenshots go to tests/artifacts/ (look at them). The adapters are generated here, never committed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bench.llama_lora import make_llama_lora
from tests.browser import ARTIFACTS, REPO, browser, served_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EXCEPTION_TEXT = re.compile(r"Traceback|Exception:|Error:|StreamlitAPIException|Something went wrong", re.I)
MAP_SHAPE = """(i) => { const g = document.querySelectorAll('.js-plotly-plot')[i];
  const t = g._fullData[0]; return [t.type, t.z.length, t.z[0].length, Array.from(t.x), Array.from(t.y)]; }"""


def rankscope_app(paths: list[Path], timeout: float = 120):
    """``rankscope app PATH... --no-browser`` on a free port (``tests.browser.served_app``); yields its URL."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return served_app(None, timeout=timeout, env=env, args=[str(p) for p in paths])


def _clean(page) -> str:
    main = page.locator("[data-testid='stMain']").inner_text()
    assert not EXCEPTION_TEXT.search(main), main[:2000]
    assert page.locator("[data-testid='stException']").count() == 0
    return main


def _table_cells(page, n: int = 40) -> list[str]:
    return page.evaluate(f"Array.from(document.querySelectorAll('[data-testid=stDataFrame] [role=gridcell]'))"
                         f".slice(0, {n}).map(e => e.textContent)")


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("llama")
    return [make_llama_lora(root / "llama-7b-r16", r=16, seed=0), make_llama_lora(root / "llama-7b-r8", r=8, seed=1)]


def test_inspect_compare_report_at_7b_scale(adapters: list[Path]) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with rankscope_app(adapters) as url, browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 1600})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)

        # Inspect: the first adapter, its model map first, then the per-layer table with readable names.
        page.get_by_role("heading", name="Model map").wait_for(timeout=90_000)
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 3", timeout=90_000)
        page.wait_for_selector("[data-testid=stDataFrame] [role=gridcell]", state="attached", timeout=60_000)
        page.wait_for_timeout(800)
        main = _clean(page)
        assert "224" in main  # adapted layers
        picked = [e.input_value() for e in page.locator("[data-testid='stSelectbox'] input").all()]
        assert picked[0] == "llama-7b-r16"  # the first PATH is shown
        kind, rows, cols, xs, ys = page.evaluate(MAP_SHAPE, 0)
        assert (kind, rows, cols) == ("heatmap", 32, 7)
        assert xs == ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                      "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
        assert ys == [str(i) for i in range(32)]  # blocks in model order (2 before 10)
        cells = _table_cells(page)
        assert cells[:3] == ["0.self_attn.q_proj", "0", "self_attn.q_proj"]  # the name, not the shared prefix
        assert "model." not in cells[0]
        assert picked[-1] == "0.self_attn.q_proj"  # the layer picker: short names, model order
        page.screenshot(path=str(ARTIFACTS / "scale-inspect.png"))
        page.locator(".js-plotly-plot").first.screenshot(path=str(ARTIFACTS / "scale-inspect-map.png"))
        # above 24 layers the per-layer bars give way to lines across depth: one per module type over 32 blocks
        depth = page.evaluate("document.querySelectorAll('.js-plotly-plot')[1]._fullData.map(t => [t.name, t.x.length])")
        assert depth == [[m, 32] for m in xs]
        page.get_by_role("heading", name="Every layer").scroll_into_view_if_needed()
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / "scale-inspect-depth.png"))
        page.get_by_text("Singular-value spectra").click()  # one trace per module type, 32 layers' lines each
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot')[1]._fullData.length === 7 && "
                               "document.querySelectorAll('.js-plotly-plot')[1]._fullData[0].name === 'self_attn.q_proj (32)'",
                               timeout=60_000)
        _clean(page)

        # Compare: one map per checkpoint on one scale, and their difference.
        page.locator("[data-testid='stSidebarNav'] a", has_text="Compare").click()
        page.get_by_role("heading", name="Compare checkpoints").wait_for(timeout=60_000)
        page.get_by_role("heading", name="Model maps, one shared colour scale").wait_for(timeout=90_000)
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 3", timeout=90_000)
        page.wait_for_timeout(800)
        _clean(page)
        assert "llama-7b-r8" in page.locator(".js-plotly-plot").nth(1).inner_text()  # the second map's title
        maps = [page.evaluate(MAP_SHAPE, i) for i in range(3)]
        assert [m[:3] for m in maps] == [["heatmap", 32, 7]] * 3  # two maps and the difference
        scales = page.evaluate("[0, 1].map(i => { const t = document.querySelectorAll('.js-plotly-plot')[i]._fullData[0];"
                               " return [t.zmin, t.zmax]; })")
        assert scales[0] == scales[1]
        page.screenshot(path=str(ARTIFACTS / "scale-compare.png"))

        # Report: build it, then open the HTML it offers, offline, and find the same map and names.
        page.locator("[data-testid='stSidebarNav'] a", has_text="Report").click()
        page.get_by_role("button", name="Build the report").click(timeout=60_000)
        button = page.get_by_role("button", name="Download HTML report")
        button.wait_for(timeout=120_000)
        _clean(page)
        page.screenshot(path=str(ARTIFACTS / "scale-report-page.png"))
        with page.expect_download(timeout=60_000) as dl:
            button.click()
        html = ARTIFACTS / "scale-report.html"
        dl.value.save_as(str(html))
        ctx = b.new_context(offline=True, viewport={"width": 1300, "height": 1400})
        rp = ctx.new_page()
        rp.goto(html.as_uri())
        rp.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 1 && "
                             "document.querySelector('.js-plotly-plot')._fullData", timeout=60_000)
        kind, rows, cols, _, _ = rp.evaluate(MAP_SHAPE, 0)
        assert (kind, rows, cols) == ("heatmap", 32, 7)
        text = rp.locator("body").inner_text()
        assert "model.layers.31.mlp.down_proj" in html.read_text() and not EXCEPTION_TEXT.search(text)
        rp.screenshot(path=str(ARTIFACTS / "scale-report.png"))
        assert not errors, errors
