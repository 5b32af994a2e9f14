"""The `hrpose serve` page in a real browser: Debian's headless chromium driven by Selenium.

Upload a coco-mini image: the overlay canvas has skeleton pixels inside every annotated
person's box (a screenshot is saved under the test's tmp_path). Live mode with Chromium's fake
camera (a y4m made here from a coco-mini image): people drawn on successive frames.
Chromium missing is a skip on a developer machine and a failure in CI (CI=true).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import cv2
import pytest

from serving import HOST, Server, weights_path

IMAGE = "000000197388.jpg"  # 640x392, 5 annotated people
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _need_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[dev]')")
    if missing:
        why = f"browser tests need {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why + "; .ci/run installs them")
        pytest.skip(why)


@pytest.fixture(scope="module")
def server(shared_data: Path, tmp_path_factory) -> Server:
    _need_browser()
    srv = Server(weights_path(shared_data), tmp_path_factory.mktemp("serve") / "server.log")
    yield srv.wait_ready()
    srv.stop()


def _y4m(image_path: Path, out: Path, frames: int = 10) -> Path:
    """A y4m video of one still image (4:2:0), for Chromium's fake camera."""
    bgr = cv2.imread(str(image_path))
    h, w = (d - d % 2 for d in bgr.shape[:2])
    yuv = cv2.cvtColor(bgr[:h, :w], cv2.COLOR_BGR2YUV_I420).tobytes()
    with out.open("wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F5:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n" + yuv)
    return out


def _browser(tmp_path: Path, camera: Path | None = None):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--window-size=1280,900",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):  # fmt: skip
        opts.add_argument(arg)
    if camera is not None:
        opts.add_argument("--use-fake-ui-for-media-stream")
        opts.add_argument("--use-fake-device-for-media-stream")
        opts.add_argument(f"--use-file-for-fake-video-capture={camera}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    return driver


def _wait(driver, script: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.2)
    state = driver.execute_script("return JSON.stringify(window.hrpose || null)")
    pytest.fail(f"timed out waiting for {script!r}; page state: {str(state)[:1000]}")


# Overlay pixels (alpha > 0) inside each box [x, y, w, h], in image pixels.
COUNT_IN_BOXES = """
const c = document.getElementById('overlay');
const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
return arguments[0].map(([x, y, w, h]) => {
  let n = 0;
  for (let j = Math.max(0, Math.floor(y)); j < Math.min(c.height, y + h); j++)
    for (let i = Math.max(0, Math.floor(x)); i < Math.min(c.width, x + w); i++)
      if (data[(j * c.width + i) * 4 + 3] > 0) n++;
  return n;
});
"""


def _annotated_boxes(coco_mini: Path, file_name: str, dy: int = 0) -> list[list[float]]:
    data = json.loads((coco_mini / "person_keypoints.json").read_text())
    image_id = next(im["id"] for im in data["images"] if im["file_name"] == file_name)
    return [
        a["bbox"]
        for a in data["annotations"]
        if a["image_id"] == image_id and a["num_keypoints"] > 0
    ]


def test_upload_draws_skeletons_on_the_annotated_people(server, coco_mini, tmp_path):
    driver = _browser(tmp_path)
    try:
        driver.get(f"http://{HOST}:{server.port}/")
        _wait(driver, "return window.hrpose && window.hrpose.skeleton.length > 0")
        driver.find_element("id", "file").send_keys(str(coco_mini / "images" / IMAGE))
        _wait(driver, "return window.hrpose.result !== null && window.hrpose.drawnPeople > 0")
        boxes = _annotated_boxes(coco_mini, IMAGE)
        counts = driver.execute_script(COUNT_IN_BOXES, boxes)
        assert len(boxes) == 5
        assert all(n > 50 for n in counts), counts  # skeleton pixels on every annotated person
        w, h = driver.execute_script("const c = overlay; return [c.width, c.height]")
        assert (w, h) == (640, 392)
        status = driver.find_element("id", "status").text
        assert "decoded people drawn" in status, status
        model = driver.find_element("id", "model").text  # the model record, as the page says it
        assert "HigherHRNet-W8" in model and "input 192" in model, model
        # the sliders work client-side: a person threshold of 1 draws nobody, no new request
        posts = server.text().count("POST /v1/poses")
        driver.execute_script(
            "const s = document.getElementById('person'); s.value = 1;"
            "s.dispatchEvent(new Event('input'));"
        )
        assert driver.execute_script("return window.hrpose.drawnPeople") == 0
        assert sum(driver.execute_script(COUNT_IN_BOXES, [[0, 0, w, h]])) == 0
        driver.execute_script(
            "const s = document.getElementById('person'); s.value = 0.25;"
            "s.dispatchEvent(new Event('input'));"
        )
        assert driver.execute_script("return window.hrpose.drawnPeople") > 0
        assert server.text().count("POST /v1/poses") == posts
        shot = tmp_path / "serve_page.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")
    finally:
        driver.quit()


def test_live_webcam_draws_people_on_successive_frames(server, coco_mini, tmp_path):
    camera = _y4m(coco_mini / "images" / IMAGE, tmp_path / "camera.y4m")
    driver = _browser(tmp_path, camera)
    try:
        driver.get(f"http://{HOST}:{server.port}/")
        _wait(driver, "return window.hrpose && window.hrpose.skeleton.length > 0")
        driver.find_element("id", "webcam").click()
        _wait(driver, "return window.hrpose.framesDrawn >= 3", timeout=180)
        log = driver.execute_script("return window.hrpose.log")
        assert all(entry["people"] > 0 for entry in log[:3]), log
        assert [entry["frame"] for entry in log[:3]] == [1, 2, 3]
        assert driver.execute_script("return window.hrpose.fps") > 0
        assert "frames/s" in driver.find_element("id", "status").text
        boxes = _annotated_boxes(coco_mini, IMAGE)
        assert sum(n > 50 for n in driver.execute_script(COUNT_IN_BOXES, boxes)) >= 3
        driver.save_screenshot(str(tmp_path / "serve_live.png"))
        driver.find_element("id", "webcam").click()  # stop
        assert driver.execute_script("return window.hrpose.live") is False
    finally:
        driver.quit()
