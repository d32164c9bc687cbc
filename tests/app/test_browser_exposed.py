"""A workbench started with ``--host 0.0.0.0`` (tests connect through 127.0.0.1 only): the path box
reads only inside ``--allow-dir``, uploads still work, an upload over ``--max-upload-mb`` names the
option, and a page from another origin cannot upload."""

from __future__ import annotations

import http.cookiejar
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.app_fixtures import roselora_file
from tests.browser import ARTIFACTS, browser, served_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SIDEBAR = "[data-testid='stSidebar']"


def _add_path(page, path: Path | str) -> None:
    box = page.get_by_placeholder("/path/to/adapter")
    box.fill(str(path))
    box.press("Enter")
    page.wait_for_timeout(800)
    page.locator(SIDEBAR).get_by_role("button", name="Add path").click()


def _sidebar_text(page, contains: str, timeout: int = 60_000) -> str:
    page.locator(SIDEBAR).get_by_text(contains).first.wait_for(timeout=timeout)
    return page.locator(SIDEBAR).inner_text()


def test_exposed_server_reads_only_allowed_folders_and_keeps_uploads(tmp_path: Path) -> None:
    samples, allowed, outside = tmp_path / "samples", tmp_path / "allowed", tmp_path / "outside"
    for d in (samples, allowed, outside):
        d.mkdir()
    roselora_file(samples / "shared-sample.safetensors")
    roselora_file(allowed / "inside.safetensors", seed=2)
    secret = roselora_file(outside / "secret.safetensors", seed=3)
    (allowed / "sneaky.safetensors").symlink_to(secret)
    upload = roselora_file(tmp_path / "uploaded.safetensors", seed=4)
    big = tmp_path / "big.safetensors"
    save_file({"w": torch.zeros(400_000)}, str(big))  # 1.6 MB, over the 1 MB limit below
    args = ["--host", "0.0.0.0", "--allow-dir", str(allowed), "--max-upload-mb", "1"]
    with served_app(samples, args=args) as url, browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(url)
        text = _sidebar_text(page, "shared-sample.safetensors")
        assert "local paths: only inside" in text and str(allowed.resolve()) in text
        assert "up to 1 MB per file" in text and "--max-upload-mb" in text

        _add_path(page, outside / "secret.safetensors")  # outside: refused, and nothing said about the file
        text = _sidebar_text(page, "outside the folders this server may read")
        assert "Could not add the path" in text and "secret.safetensors" not in page.locator(
            f"{SIDEBAR} [data-testid='stMultiSelect']").inner_text()
        _add_path(page, allowed / "sneaky.safetensors")  # inside by name, outside once the link is followed
        _sidebar_text(page, "outside the folders this server may read")
        _add_path(page, allowed / ".." / "outside" / "secret.safetensors")
        _sidebar_text(page, "outside the folders this server may read")

        _add_path(page, allowed / "inside.safetensors")  # inside: loaded
        _sidebar_text(page, "Added inside.safetensors")

        page.locator(f"{SIDEBAR} input[type='file']").set_input_files(str(upload))  # uploads keep working
        _sidebar_text(page, "Added uploaded.safetensors")

        page.wait_for_function(f"document.querySelectorAll(\"{SIDEBAR} input[type='file']\").length == 1")
        page.locator(f"{SIDEBAR} input[type='file']").set_input_files(str(big))  # over the limit
        page.wait_for_timeout(3000)
        text = page.locator(SIDEBAR).inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "exposed-server.png"), full_page=True)
        refusal = page.locator(f"{SIDEBAR} [data-testid='stFileChip'] [role='alert']").inner_text()
        assert "File must be 1.0MB or smaller" in refusal, refusal  # Streamlit's own refusal (its tooltip)...
        assert "rankscope app --max-upload-mb N" in text  # ...next to the option that raises the limit
        assert "Added big.safetensors" not in text
        chosen = page.locator(f"{SIDEBAR} [data-testid='stMultiSelect']").inner_text()
        assert "inside.safetensors" in chosen and "uploaded.safetensors" in chosen and "secret" not in chosen


def test_exposed_server_refuses_uploads_from_another_origin(tmp_path: Path) -> None:
    samples = tmp_path / "samples"
    samples.mkdir()
    roselora_file(samples / "s.safetensors")
    with served_app(samples, args=["--host", "0.0.0.0"]) as url, browser() as b:
        # 1. the server: the session's XSRF cookie alone (what a cross-site request could carry) is refused,
        #    and so is a forged token; the real token gets past the check (then fails on the made-up session).
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        opener.open(url + "/_stcore/health", timeout=10).read()
        token = next(c.value for c in jar if c.name == "_streamlit_xsrf")
        body = b"--zz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.safetensors\"\r\n\r\nx\r\n--zz--\r\n"

        def put(headers: dict[str, str]) -> tuple[int, str]:
            req = urllib.request.Request(url + "/_stcore/upload_file/some-session/some-file", data=body, method="PUT",
                                         headers={"Content-Type": "multipart/form-data; boundary=zz",
                                                  "Origin": "http://evil.example", **headers})
            try:
                with opener.open(req, timeout=10) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()

        code, reason = put({})
        assert code == 403 and "XSRF" in reason
        forged = token.split("|")
        forged[2] = "0" * len(forged[2])
        assert put({"X-Xsrftoken": "|".join(forged)})[0] == 403
        code, reason = put({"X-Xsrftoken": token})
        assert code != 403 and "XSRF" not in reason  # control: the check itself is what refuses the others

        # 2. a browser page on another origin: the upload never reaches the server's handler
        page = b.new_page()
        page.goto(url)  # a real session first: the browser holds this server's cookie
        page.get_by_text("s.safetensors").first.wait_for(timeout=60_000)
        page.route("http://evil.test/", lambda route: route.fulfill(status=200, content_type="text/html",
                                                                     body="<html><body>evil</body></html>"))
        page.goto("http://evil.test/")
        result = page.evaluate("""async (target) => {
            const form = new FormData();
            form.append("file", new Blob(["x"]), "a.safetensors");
            try {
                const r = await fetch(target, {method: "PUT", body: form, credentials: "include"});
                return "status " + r.status;
            } catch (e) { return "blocked: " + e; }
        }""", url + "/_stcore/upload_file/some-session/some-file")
        assert result.startswith("blocked") or result == "status 403", result


def test_a_loopback_server_seen_through_a_proxy_turns_the_path_box_off(tmp_path: Path) -> None:
    """Behind nginx/Caddy the server is bound to 127.0.0.1 but serves other machines: requests that
    carry the proxy's X-Forwarded-For get the exposed rule."""
    samples = tmp_path / "samples"
    samples.mkdir()
    roselora_file(samples / "s.safetensors")
    with served_app(samples) as url, browser() as b:
        proxied = b.new_context(extra_http_headers={"X-Forwarded-For": "203.0.113.7"}).new_page()
        proxied.goto(url)
        text = _sidebar_text(proxied, "local paths: off")
        assert "--allow-dir" in text and proxied.get_by_placeholder("/path/to/adapter").is_disabled()
        direct = b.new_page()
        direct.goto(url)
        direct.locator(SIDEBAR).get_by_text("s.safetensors").first.wait_for(timeout=60_000)
        assert direct.get_by_placeholder("/path/to/adapter").is_enabled()
