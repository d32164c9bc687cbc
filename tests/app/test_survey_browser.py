"""The Survey page in Chromium: a 100,000-row survey table renders without being shipped to the browser
(the figures' points, the websocket bytes and the DOM stay small), and names from files stay inert."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from app.survey import query
from tests.app.survey_fixtures import synthetic_table
from tests.app_fixtures import lora_file
from tests.browser import ARTIFACTS, browser, served_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# numbers each figure holds, from plotly's decoded traces (``_fullData``): x values, or heatmap cells
POINTS_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(el =>
    (el._fullData || []).reduce((n, t) => n + (t.type === 'heatmap'
        ? Array.from(t.z || []).reduce((m, row) => m + (row ? row.length : 0), 0)
        : (t.x ? t.x.length : 0)), 0))"""


def test_100k_row_table_is_not_shipped_whole(tmp_path: Path) -> None:
    table = synthetic_table(tmp_path / "big.parquet", 500, 200)
    n_rows = pq.ParquetFile(table).metadata.num_rows
    assert n_rows == 100_000
    samples = tmp_path / "samples"
    lora_file(samples / "lora.safetensors")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with served_app(samples) as url, browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 3000})
        errors: list[str] = []
        received = [0]
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("websocket", lambda ws: ws.on("framereceived", lambda f: received.__setitem__(0, received[0] + len(f))))
        page.goto(url + "/survey")
        page.get_by_role("heading", name="Survey many checkpoints").wait_for(timeout=60_000)
        box = page.get_by_label("Survey table (a local .parquet path)")
        box.fill(str(table))
        box.press("Enter")
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 3", timeout=120_000)
        page.get_by_text("checkpoints pass the filters").wait_for(timeout=60_000)
        page.wait_for_timeout(1500)
        points = page.evaluate(POINTS_JS)
        main = page.locator("[data-testid='stMain']").inner_text()
        dom = len(page.content())
        page.screenshot(path=str(ARTIFACTS / "survey.png"), full_page=True)
    assert not errors, errors
    assert "100,000" in main and "500" in main
    assert len(points) == 3 and sum(points) <= query.SCATTER_CAP + 1000, points  # box groups + map cells + sample
    assert max(points) >= query.SCATTER_CAP  # the scatter is the capped sample
    # what reached the browser: far below the table itself (100k rows x 33 columns)
    assert received[0] < 3_000_000, received[0]
    assert dom < 2_000_000, dom
