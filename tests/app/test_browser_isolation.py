"""One served workbench, two browser sessions: an upload in one is never visible in the other;
hostile layer names in the served pages fire no script; an upload without the XSRF token is refused."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.app_fixtures import NAMES, roselora_file
from tests.browser import browser, served_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HOSTILE = ["<script>alert(1)</script>", "</script><img src=x onerror=alert(2)>"]


def test_two_browser_sessions_are_isolated_and_names_stay_inert(tmp_path: Path) -> None:
    samples = tmp_path / "samples"
    samples.mkdir()
    roselora_file(samples / "shared-sample.safetensors")
    private = roselora_file(tmp_path / "private-upload.safetensors", names=[*NAMES[:2], *HOSTILE])
    with served_app(samples) as url, browser() as b:
        a_ctx, b_ctx = b.new_context(viewport={"width": 1400, "height": 2000}), b.new_context()
        dialogs: list[str] = []
        pages = []
        for ctx in (a_ctx, b_ctx):
            page = ctx.new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(url)
            page.get_by_text("shared-sample.safetensors").first.wait_for(timeout=60_000)
            pages.append(page)
        a, b_page = pages
        a.locator("[data-testid='stSidebar'] input[type='file']").set_input_files(str(private))
        a.get_by_text("Added private-upload.safetensors").wait_for(timeout=60_000)
        a.wait_for_timeout(3000)  # let A's pages render with the hostile names in its library
        assert a.locator("[data-testid='stSidebar']").inner_text().count("private-upload.safetensors") >= 1
        b_page.reload()
        b_page.get_by_text("shared-sample.safetensors").first.wait_for(timeout=60_000)
        b_page.wait_for_timeout(1500)
        assert "private-upload" not in b_page.locator("body").inner_text()
        assert not dialogs, dialogs  # no alert() ran in either session
        assert a.locator("img[src='x']").count() == 0


def test_upload_without_the_xsrf_token_is_refused(tmp_path: Path) -> None:
    samples = tmp_path / "samples"
    samples.mkdir()
    roselora_file(samples / "s.safetensors")
    with served_app(samples) as url:
        req = urllib.request.Request(f"{url}/_stcore/upload_file/some-session/some-file", data=b"x" * 10, method="PUT",
                                     headers={"Content-Type": "multipart/form-data; boundary=zz"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 403
