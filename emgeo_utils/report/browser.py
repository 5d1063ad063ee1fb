"""Look at the report the way a reader does: in a real headless browser, and one notebook in JupyterLab.

    python -m emgeo_utils.report.browser figures/report/index.html --screenshot build/report.png \\
        --lab build/default/06_mechanism.ipynb

Drives Chromium through chromedriver (Selenium): every image must load, every local link must
resolve (its page must exist and hold the anchor it points at), and the console must stay free of
errors; a screenshot is saved. With `--lab`, a JupyterLab server is started on the notebook's folder
and the notebook must render its outputs. Exits 1 and lists the problems otherwise. Without a
browser, `BrowserMissing` says how to install one.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

INSTALL = ("no headless browser found: install Chromium and its driver (Debian/Ubuntu: "
           "`sudo apt-get install chromium chromium-driver`) and Selenium (`pip install selenium`, in the dev extras)")


class BrowserMissing(RuntimeError):
    pass


def find_browser() -> tuple[str, str]:
    """(browser binary, chromedriver) or BrowserMissing."""
    try:
        import selenium  # noqa: F401
    except ImportError as err:
        raise BrowserMissing(INSTALL) from err
    binary = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    driver = shutil.which("chromedriver")
    if not binary or not driver:
        raise BrowserMissing(INSTALL)
    return binary, driver


def open_browser(width: int = 1300, height: int = 1800):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = find_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={width},{height}",
                "--allow-file-access-from-files"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def _console_errors(driver) -> list[str]:
    return [f"console: {e['message']}" for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def _local(href: str, base: Path) -> tuple[Path | None, str]:
    """(the file a link points at, its anchor) for a local link; (None, "") for a remote one."""
    parsed = urlparse(href)
    if parsed.scheme in ("http", "https", "mailto", "data"):
        return None, ""
    if parsed.scheme == "file":
        return Path(unquote(parsed.path)), parsed.fragment
    return (base.parent / unquote(parsed.path)).resolve() if parsed.path else base, parsed.fragment


def page_problems(index: Path, screenshot: Path | None = None) -> list[str]:
    """Everything a reader would find broken on the page and the pages it links to."""
    index = Path(index).resolve()
    if not index.is_file():
        return [f"{index}: no such page"]
    driver = open_browser()
    problems = []
    try:
        driver.get(index.as_uri())
        time.sleep(0.5)
        for src, ok in driver.execute_script(
                "return [...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])"):
            if not ok:
                problems.append(f"image did not load: {src}")
        hrefs = driver.execute_script("return [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))")
        problems += _console_errors(driver)
        if screenshot:
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(screenshot))
        wanted: dict[Path, set[str]] = {}
        for href in hrefs:
            target, anchor = _local(href, index)
            if target is None:
                continue
            if not target.is_file():
                problems.append(f"broken link: {href}")
                continue
            wanted.setdefault(target, set()).add(anchor)
        for target, anchors in wanted.items():
            if target != index:
                driver.get(target.as_uri())
                time.sleep(0.2)
                problems += [f"{target.name}: {m}" for m in _console_errors(driver)]
            present = driver.execute_script("return arguments[0].filter(id => !document.getElementById(id))",
                                            sorted(a for a in anchors if a))
            problems += [f"broken anchor: {target.name}#{a}" for a in present]
    finally:
        driver.quit()
    return problems


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_problems(notebook: Path, screenshot: Path | None = None, timeout: float = 90) -> list[str]:
    """Open `notebook` in a fresh JupyterLab server (root or not) and check that its outputs render."""
    notebook = Path(notebook).resolve()
    if not notebook.is_file():
        return [f"{notebook}: no such notebook"]
    port, token = _free_port(), secrets.token_hex(16)
    root = ["--allow-root"] if hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() == 0 else []
    server = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
                               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={notebook.parent}", *root],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    driver = None
    try:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None:
                    return [f"jupyter lab exited at once: {server.stderr.read()[-600:]}"]
                time.sleep(0.5)
        driver = open_browser()
        driver.get(f"http://127.0.0.1:{port}/lab/tree/{notebook.name}?token={token}")
        rendered = 0
        while time.time() < deadline and not rendered:
            rendered = driver.execute_script("return document.querySelectorAll('.jp-OutputArea-output').length")
            time.sleep(1)
        if screenshot:
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(screenshot))
        return [] if rendered else [f"JupyterLab showed no outputs of {notebook.name} within {timeout:.0f} s"]
    finally:
        if driver:
            driver.quit()
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("index", type=Path)
    parser.add_argument("--screenshot", type=Path, default=Path("build/report.png"))
    parser.add_argument("--lab", type=Path, help="an executed notebook to open in JupyterLab")
    args = parser.parse_args(argv)
    problems = page_problems(args.index, args.screenshot)
    if args.lab:
        problems += lab_problems(args.lab, args.screenshot.with_name(args.screenshot.stem + "-lab.png"))
    for p in problems:
        print("PROBLEM:", p)
    print(f"{args.index}: {'ok' if not problems else f'{len(problems)} problems'} (screenshot {args.screenshot})")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
