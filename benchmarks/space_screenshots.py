"""Screenshots of the Space on the cat example, as a visitor sees it on a desktop and on a phone.

    python benchmarks/space_screenshots.py      # docs/space.png, docs/space_phone.png (~1 min)

Serves ``space/app.py`` on localhost with ``MODEL_ID`` (default: the shipped student), opens it in Debian's
Chromium through Playwright, clicks the "cat" example and waits for the prediction and the attention
picture. The phone shot is the first screen only (390 x 844 CSS pixels, as an iPhone 12-14), to show what is
above the fold; it also prints where the prediction sits on that screen.
"""

from __future__ import annotations

import argparse
import importlib.util
import socket
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
VIEWS = {"desktop": {"viewport": {"width": 1400, "height": 1000}, "device_scale_factor": 1},
         "phone": {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True,
                   "has_touch": True}}


def load_app():
    spec = importlib.util.spec_from_file_location("space_app", REPO / "space" / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def shoot(url: str, example: str, view: str, path: Path) -> dict:
    """Click ``example`` in a fresh page of the ``view`` size; screenshot; where the prediction landed."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        try:
            page = browser.new_context(**VIEWS[view]).new_page()
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url) else route.abort())
            page.goto(url)
            page.get_by_text(example, exact=True).first.click()
            page.locator("#fused [data-testid=label-output-value]").wait_for(timeout=60_000)
            page.locator("#attention img").wait_for(timeout=60_000)
            page.evaluate("window.scrollTo(0, 0)")  # clicking an example scrolled down to it: back to the top
            page.wait_for_timeout(500)
            box = page.locator("#fused").bounding_box()
            prediction = page.locator("#fused [data-testid=label-output-value]").inner_text().strip()
            page.screenshot(path=str(path), full_page=view == "desktop")
            return {"view": view, "prediction": prediction, "prediction_top_px": round(box["y"]),
                    "prediction_bottom_px": round(box["y"] + box["height"]),
                    "screen_height_px": VIEWS[view]["viewport"]["height"]}
        finally:
            browser.close()


def main() -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="MODEL_ID (default: the app's, the shipped student)")
    parser.add_argument("--example", default="cat")
    parser.add_argument("--out_dir", default=str(REPO / "docs"))
    args = parser.parse_args()
    app = load_app()
    demo = app.build_demo(args.model)
    _, url, _ = app.launch(demo, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                           quiet=True)
    try:
        names = {"desktop": "space.png", "phone": "space_phone.png"}
        shots = [shoot(url, args.example, view, Path(args.out_dir) / name) for view, name in names.items()]
    finally:
        demo.close()
    for shot in shots:
        print(shot)
    return shots


if __name__ == "__main__":
    main()
