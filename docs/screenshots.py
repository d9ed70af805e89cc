"""Screenshots of `funnel report` and `funnel docs` for the README, with headless Chromium.

    python docs/screenshots.py [--month 2024-06]

Run from the repository after `funnel build`: writes docs/report.png and docs/docs.png
(1400 px wide; the README shows the report's). Chromium runs with the network off, as the
tests run it, so a screenshot is also proof that the page draws offline.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def shoot(chromium: str, page: Path, png: Path, height: int) -> None:
    with tempfile.TemporaryDirectory(prefix="funnel-shot-") as profile:
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--proxy-server=127.0.0.1:9",
                f"--user-data-dir={profile}",
                f"--screenshot={png}",
                f"--window-size=1400,{height}",
                page.as_uri(),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    print(f"{png}: {png.stat().st_size / 1000:.0f} kB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--month", default="2024-06")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no chromium on PATH; apt-get install chromium")
    funnel = [str(Path(sys.executable).with_name("funnel"))]
    with tempfile.TemporaryDirectory(prefix="funnel-pages-") as tmp:
        report, site = Path(tmp) / "report.html", Path(tmp) / "site"
        subprocess.run([*funnel, "report", "--month", args.month, "--out", str(report)], check=True, cwd=REPO)
        subprocess.run([*funnel, "docs", "--out", str(site)], check=True, cwd=REPO)
        shoot(chromium, report, HERE / "report.png", 2000)
        shoot(chromium, site / "index.html", HERE / "docs.png", 1300)


if __name__ == "__main__":
    main()
