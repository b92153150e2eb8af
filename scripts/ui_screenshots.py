"""The MLflow UI, seen: a tracking server on 127.0.0.1, a short training run logged to it, and
headless Chromium saving screenshots of the run's page, its metric charts and an image artifact.

    python scripts/ui_screenshots.py --out docs/ui                       # the digits demo, shortened
    python scripts/ui_screenshots.py --out /tmp/ui -- --preset toy --steps 200
    python scripts/ui_screenshots.py --url http://127.0.0.1:5000 --run-id <id> --out /tmp/ui

Needs Debian's `chromium` and `chromium-driver` (`apt-get install -y chromium chromium-driver`)
and the `selenium` package (the `dev` extra). Writes run.png, metrics.png and artifact.png
under --out; `tests/test_user_run.py` runs `shoot` against a run of its own.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Headless flags that work in containers without a GPU, network or display; a fresh profile
# each time so that no earlier session's UI state (a chosen view, an open panel) carries over.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1600,1100")
# The digits demo, shortened (about 5 min on 2 cores): what docs/ui/*.png show.
DEFAULT_TRAINING = ["--steps", "1200", "--log-every", "100", "--eval-every", "400",
                    "--checkpoint-every", "1200"]


# ---- a tracking server on loopback ---------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TrackingServer:
    """`mlflow server` on 127.0.0.1 with a SQLite store and proxied artifacts under `work`.
    `stop()` and `start()` again keep the store and the port (a server restarted in place)."""

    def __init__(self, work: Path, port: int | None = None):
        self.work, self.port = Path(work), port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, wait_s: float = 180) -> "TrackingServer":
        self.work.mkdir(parents=True, exist_ok=True)
        log = (self.work / "server.log").open("a")
        mlflow = Path(sys.executable).with_name("mlflow")
        self.proc = subprocess.Popen(
            [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{self.work / 'mlflow.db'}",
             "--artifacts-destination", str(self.work / "artifacts"), "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + wait_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.5)
        raise TimeoutError(f"{self.url} did not answer in {wait_s}s: {self.log_tail()}")

    def stop(self) -> None:
        """Stop the server and every process it started (its own process group)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self.proc = None

    def log_tail(self) -> str:
        path = self.work / "server.log"
        return path.read_text()[-3000:] if path.exists() else ""


# ---- the browser -----------------------------------------------------------------------------------

def browser():
    """Headless Chromium under chromedriver (Debian's packages; nothing is downloaded)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    binary = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                   if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    if not binary or not driver:
        raise FileNotFoundError("headless screenshots need Chromium and its driver: "
                                "apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="ali_chromium_")
    options.add_argument(f"--user-data-dir={profile}")
    options.binary_location = binary
    d = webdriver.Chrome(options=options, service=Service(driver))
    d.profile_dir = profile   # removed by shoot() once the browser has quit
    return d


def _page_text(d) -> str:
    from selenium.webdriver.common.by import By
    return d.find_element(By.TAG_NAME, "body").text


def _tidy(d) -> None:
    """The training view of the side bar (the UI opens in its GenAI view), and no assistant
    panel over the page."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    for xpath in ("//*[normalize-space(text())='Model training']",
                  "//button[@aria-label='Close']"):
        for el in d.find_elements(By.XPATH, xpath):
            try:
                el.click()
                time.sleep(0.5)
            except WebDriverException:
                pass


def shoot(url: str, experiment_id: str, run_id: str, run_name: str, out: Path,
          image: str, timeout_s: float = 90) -> dict:
    """Screenshots of a run (run.png), its metric charts (metrics.png) and the image artifact
    `image` (artifact.png) under `out`; returns what the pages showed: their text and the
    artifact's <img> (its natural size, 0 when it did not load)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    out.mkdir(parents=True, exist_ok=True)
    page = f"{url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    d = browser()
    facts: dict = {}
    try:
        d.get(page)
        WebDriverWait(d, timeout_s).until(lambda d: run_name in _page_text(d))
        _tidy(d)              # the view switch lands on the experiment's page: come back
        d.get(page)
        WebDriverWait(d, timeout_s).until(lambda d: run_name in _page_text(d)
                                          and "Parameters" in _page_text(d))
        facts["run_page"] = _page_text(d)
        d.save_screenshot(str(out / "run.png"))

        d.get(f"{page}/model-metrics")
        WebDriverWait(d, timeout_s).until(lambda d: "loss_d" in _page_text(d)
                                          and d.find_elements(By.CSS_SELECTOR, "svg .trace"))
        time.sleep(2)   # charts animate in
        facts["metrics_page"] = _page_text(d)
        d.save_screenshot(str(out / "metrics.png"))

        d.get(f"{page}/artifacts/{image}")
        name = image.rsplit("/", 1)[-1]

        def loaded(d):
            imgs = [i for i in d.find_elements(By.TAG_NAME, "img")
                    if (i.get_attribute("src") or "").startswith("blob:")
                    and int(i.get_attribute("naturalWidth") or 0) > 0]
            return imgs[0] if imgs and name in _page_text(d) else False
        img = WebDriverWait(d, timeout_s).until(loaded)
        facts["artifact_page"] = _page_text(d)
        facts["image"] = {"width": int(img.get_attribute("naturalWidth")),
                          "height": int(img.get_attribute("naturalHeight"))}
        d.save_screenshot(str(out / "artifact.png"))
    finally:
        d.quit()
        shutil.rmtree(d.profile_dir, ignore_errors=True)
    return facts


# ---- the command -----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Flags after `--` go to python -m ali_dist.train "
                                       f"(default: the digits demo, {' '.join(DEFAULT_TRAINING)})")
    p.add_argument("--out", required=True, help="directory for run.png, metrics.png, artifact.png")
    p.add_argument("--url", help="an MLflow server that already holds the run (with --run-id)")
    p.add_argument("--run-id", help="the run to show (with --url)")
    p.add_argument("--image", help="the image artifact to show (default: the run's newest "
                                   "samples/*.png grid, else its first .png)")
    p.add_argument("train", nargs="*", help="training flags (after --)")
    args = p.parse_args(argv)
    from mlflow.tracking import MlflowClient

    server = None
    try:
        if args.url:
            if not args.run_id:
                p.error("--url needs --run-id")
            url, run_id = args.url, args.run_id
        else:
            server = TrackingServer(Path(tempfile.mkdtemp(prefix="ali_ui_"))).start()
            url, name = server.url, f"ui-demo-{time.strftime('%H%M%S')}"
            env = {**os.environ, "MLFLOW_TRACKING_URI": url,
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                               os.environ.get("PYTHONPATH")]))}
            env.pop("RAY_ADDRESS", None)
            subprocess.run([sys.executable, "-m", "ali_dist.train", "--name", name,
                            "--storage", str(server.work / "ray"),
                            *(args.train or DEFAULT_TRAINING)], env=env, check=True)
            client = MlflowClient(url)
            run_id = client.search_runs(
                [e.experiment_id for e in client.search_experiments()],
                filter_string=f"attributes.run_name = '{name}'")[0].info.run_id
        client = MlflowClient(url)
        run = client.get_run(run_id)
        image = args.image or _an_image(client, run_id)
        facts = shoot(url, run.info.experiment_id, run_id, run.info.run_name, Path(args.out),
                      image)
        print(f"screenshots of run {run.info.run_name!r} ({image}: {facts['image']['width']}x"
              f"{facts['image']['height']} px) in {args.out}")
    finally:
        if server:
            server.stop()
    return 0


def _an_image(client, run_id: str) -> str:
    def pngs(path=None):
        for a in client.list_artifacts(run_id, path):
            if a.is_dir:
                yield from pngs(a.path)
            elif a.path.endswith(".png"):
                yield a.path
    found = sorted(pngs())
    samples = [a for a in found if a.startswith("samples/")]
    if not (samples or found):
        raise SystemExit(f"error: run {run_id} has no .png artifact to show")
    return (samples or found)[-1]


if __name__ == "__main__":
    sys.exit(main())
