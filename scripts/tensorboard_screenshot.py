"""Screenshots of TensorBoard for a training run, taken in headless Chromium.

  python scripts/tensorboard_screenshot.py --logdir=runs/sketchnet/tb --out_dir=docs

Starts `tensorboard --logdir` on a free local port, opens the scalars dashboard
(losses, metrics, learning rate per epoch) and the images dashboard filtered to
the confusion matrix, and saves <out_dir>/tensorboard.png and
<out_dir>/tensorboard_images.png. Needs selenium and Debian's chromium +
chromium-driver (apt-get install -y chromium chromium-driver).
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

# (file, URL fragment, label of a checkbox to tick first). The legacy dashboards take a
# tag filter in the URL and expand the matching cards.
PAGES = [
    ("tensorboard.png", "#scalars&tagFilter=epoch_(loss|accuracy|top1|top5|macro_f1|learning_rate)", None),
    ("tensorboard_images.png", "#images&tagFilter=confusion_matrix", "Show actual image size"),
]

# Finds an element by its text through TensorBoard's (Polymer) shadow roots.
_FIND_BY_TEXT = """
const want = arguments[0];
const walk = (root) => {
  for (const el of root.querySelectorAll('paper-checkbox, mat-checkbox, label, button')) {
    if ((el.innerText || el.textContent || '').trim() === want) return el;
  }
  for (const el of root.querySelectorAll('*')) {
    if (el.shadowRoot) { const f = walk(el.shadowRoot); if (f) return f; }
  }
  return null;
};
return walk(document);
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_tensorboard(logdir: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", logdir,
                             "--host", "127.0.0.1", "--port", str(port), "--reload_interval", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tensorboard exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            # The run list is filled once the logdir has been read.
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=5) as r:
                if r.read().strip() not in (b"", b"[]"):
                    return proc
        except OSError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"tensorboard did not serve {logdir} within 120 s")


def chromium(width: int, height: int):
    from selenium import webdriver
    binary = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    if not (binary and driver):
        raise SystemExit("needs chromium and chromedriver on PATH (apt-get install -y chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=driver))


def wait_rendered(drv, settle_s: float, timeout: float = 90):
    """TensorBoard loads data asynchronously: wait for charts or images, then let them settle."""
    script = ("const walk = (root) => { let n = 0; for (const el of root.querySelectorAll('*')) {"
              "  if (el.tagName === 'CANVAS' || el.tagName === 'svg' || (el.tagName === 'IMG' && el.complete"
              "      && el.naturalWidth > 0)) n++;"
              "  if (el.shadowRoot) n += walk(el.shadowRoot); } return n; };"
              "return walk(document);")
    deadline = time.time() + timeout
    while time.time() < deadline and not drv.execute_script(script):
        time.sleep(0.5)
    time.sleep(settle_s)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logdir", required=True, help="the run's TensorBoard folder (workdir/tb)")
    ap.add_argument("--out_dir", default="docs")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=1000)
    ap.add_argument("--settle_s", type=float, default=5.0, help="extra wait for charts to finish drawing")
    args = ap.parse_args(argv)
    if not os.path.isdir(args.logdir):
        raise SystemExit(f"{args.logdir}: no such folder")
    os.makedirs(args.out_dir, exist_ok=True)
    port = free_port()
    tb = start_tensorboard(args.logdir, port)
    drv = None
    try:
        drv = chromium(args.width, args.height)
        for name, fragment, tick in PAGES:
            drv.get(f"http://127.0.0.1:{port}/?darkMode=false{fragment}")
            wait_rendered(drv, 1.0)
            if tick:
                box = drv.execute_script(_FIND_BY_TEXT, tick)
                if box is None:
                    print(f"note: no {tick!r} checkbox found; screenshot as is")
                else:
                    drv.execute_script("arguments[0].click();", box)
            wait_rendered(drv, args.settle_s)
            path = os.path.join(args.out_dir, name)
            drv.save_screenshot(path)
            print(f"wrote {path}")
    finally:
        if drv is not None:
            drv.quit()
        tb.terminate()
        tb.wait(30)


if __name__ == "__main__":
    main()
