"""Open a report in headless Chromium: screenshot it, collect console messages, check every image loaded.

The report itself has no script. To see whether images decoded we load a copy with one small probe
script that, on `load`, writes the number of images and of broken ones into the DOM, which
`--dump-dom` returns. Chromium prints every console message of the page to stderr as
`CONSOLE:<line>]`; the report page should produce none (a failed resource produces one).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

PROBE = (
    "<script>window.addEventListener('load',()=>{const im=[...document.images];"
    "document.body.setAttribute('data-images',im.length);"
    "document.body.setAttribute('data-broken',im.filter(i=>!(i.complete&&i.naturalWidth>0)).length);});</script>"
)
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000"]


@dataclass
class BrowserCheck:
    images: int
    broken_images: int
    console: list[str] = field(default_factory=list)
    screenshot: Path | None = None


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _console_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if re.search(r":CONSOLE[:(]", ln)]


def check_in_browser(html_path: str | Path, screenshot: str | Path, *, timeout: float = 120.0) -> BrowserCheck:
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("no Chromium found (install Debian's `chromium` package)")
    page = Path(html_path).resolve()
    shot = Path(screenshot).resolve()
    run = subprocess.run(
        [exe, *_FLAGS, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri()],
        capture_output=True, text=True, timeout=timeout,
    )
    console = _console_lines(run.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        probed = Path(tmp) / page.name
        probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
        dom = subprocess.run([exe, *_FLAGS, "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=timeout)
    m_img = re.search(r'data-images="(\d+)"', dom.stdout)
    m_bad = re.search(r'data-broken="(\d+)"', dom.stdout)
    if m_img is None or m_bad is None:
        raise RuntimeError(f"Chromium did not load {page} (exit {dom.returncode}): {dom.stderr[-500:]}")
    return BrowserCheck(
        images=int(m_img.group(1)),
        broken_images=int(m_bad.group(1)),
        console=console + _console_lines(dom.stderr),
        screenshot=shot if shot.is_file() else None,
    )
