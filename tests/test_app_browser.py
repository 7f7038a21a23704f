"""The app in a real browser: headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by selenium)
opens the page, generates images while the live preview changes, downloads a PNG that carries its parameters, drops it
back to restore them, paints a mask and inpaints, compares samplers, and moves the toy's noise level.

Screenshots of each tab go to $DIFFLAB_APP_SCREENSHOTS when it is set (``docs/app/`` holds the committed ones).
Skipped, saying why, only when the browser or selenium is not installed (``.ci/run`` installs both).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

import difflab
from difflab.app import params as P
from difflab.app.server import App, make_server

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    pytest.skip("the browser tests need Debian's chromium and chromium-driver (apt-get install chromium "
                "chromium-driver), which are not installed here", allow_module_level=True)

from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

SHOTS = os.environ.get("DIFFLAB_APP_SCREENSHOTS")


@pytest.fixture(scope="module")
def base():
    app = App({"mnist": difflab.load("mnist")}, P.Limits(max_images=16, max_steps=250), abandon_after=60)
    srv = make_server(app, "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    app.queue.close()
    srv.server_close()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                "--disable-gpu", "--no-first-run"):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    try:
        driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    except Exception as e:  # a browser that is installed but cannot start is a failure, not a skip
        raise AssertionError(f"chromium is installed but did not start: {e}") from None
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait(driver, condition, seconds: float = 60):
    return WebDriverWait(driver, seconds, poll_frequency=0.05).until(condition)


def shot(driver, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(SHOTS) / f"{name}.png"))


def set_value(driver, form: str, name: str, value) -> None:
    el = driver.find_element(By.CSS_SELECTOR, f"#{form} [name={name}]")
    if el.tag_name == "select":
        Select(el).select_by_value(str(value))
    else:
        driver.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'))",
                              el, str(value))


def test_generate_with_live_preview_then_download_and_restore(browser, base, downloads):
    d = browser
    d.get(base)
    wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#generate-form [name=model] option"))
    assert d.find_element(By.CSS_SELECTOR, "#generate-form [name=model]").get_attribute("value") == "mnist"
    offered = [o.get_attribute("value") for o in d.find_elements(By.CSS_SELECTOR, "#generate-form [name=sampler] option")]
    assert "ddim" in offered and "consistency" not in offered  # mnist predicts ε: no consistency sampler offered
    for name, value in (("sampler", "ddpm"), ("steps", 150), ("num", 8), ("seed", 5), ("classes", "3"),
                        ("guidance", "cfg"), ("scale", 2)):
        set_value(d, "generate-form", name, value)
    d.find_element(By.ID, "generate-run").click()
    seen = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not d.find_elements(By.CSS_SELECTOR, "#generate-tiles img"):
        src = d.find_element(By.ID, "generate-xt").get_attribute("src")
        if src and src.startswith("data:image/png"):
            seen.add(src)
        if len(seen) == 3:
            shot(d, "generate-running")
        time.sleep(0.05)
    assert len(seen) >= 3, f"the live preview changed {len(seen)} times while sampling ran"
    tiles = wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#generate-tiles .tile"))
    assert len(tiles) == 8 and "seed 5" in tiles[0].text and "seed 12" in tiles[7].text
    assert "done" in d.find_element(By.ID, "generate-status").text
    shot(d, "generate")
    tiles[2].find_element(By.CSS_SELECTOR, "a.download").click()  # download tile 2
    png = wait(d, lambda d: [p for p in downloads.glob("*.png") if p.stat().st_size > 0], 30)[0]
    params = P.params_from_png(png.read_bytes())
    assert params["seed"] == 7 and params["steps"] == 150 and params["classes"] == [3] and params["sampler"] == "ddpm"
    # keep: dropping the PNG back restores its parameters (the drop handler's file, through a hidden input)
    set_value(d, "generate-form", "seed", 0)
    set_value(d, "generate-form", "steps", 9)
    d.execute_script("const i = document.createElement('input'); i.type = 'file'; i.id = 'drop-probe';"
                     "i.style = 'position:absolute;left:0;top:0;opacity:0;width:1px;height:1px';"
                     "i.onchange = () => restoreFrom(i.files[0]); document.body.appendChild(i);")
    d.find_element(By.ID, "drop-probe").send_keys(str(png))
    wait(d, lambda d: d.find_element(By.CSS_SELECTOR, "#generate-form [name=seed]").get_attribute("value") == "7")
    assert d.find_element(By.CSS_SELECTOR, "#generate-form [name=steps]").get_attribute("value") == "150"


def test_stop_ends_the_work(browser, base):
    d = browser
    d.find_element(By.ID, "tab-generate").click()
    set_value(d, "generate-form", "steps", 250)
    set_value(d, "generate-form", "sampler", "ddpm")
    d.find_element(By.ID, "generate-run").click()
    wait(d, lambda d: "running" in d.find_element(By.ID, "generate-status").text, 30)
    d.find_element(By.ID, "generate-stop").click()
    wait(d, lambda d: d.find_element(By.ID, "generate-status").text == "stopped", 30)
    assert not d.find_element(By.ID, "generate-run").get_attribute("disabled")


def test_paint_a_mask_and_inpaint(browser, base):
    d = browser
    d.find_element(By.ID, "tab-edit").click()
    d.find_element(By.ID, "use-tile").click()  # the last generated image
    time.sleep(0.3)
    overlay = d.find_element(By.ID, "edit-overlay")
    ActionChains(d).move_to_element_with_offset(overlay, 10, -100).click_and_hold() \
        .move_by_offset(0, 60).move_by_offset(0, 60).move_by_offset(0, 60).release().perform()
    painted = d.execute_script("const c = document.getElementById('edit-overlay').getContext('2d');"
                               "return c.getImageData(0, 0, 280, 280).data.filter((v, i) => i % 4 == 3 && v > 0).length;")
    assert painted > 500
    set_value(d, "edit-form", "steps", 20)
    set_value(d, "edit-form", "num", 2)
    d.find_element(By.ID, "edit-run").click()
    wait(d, lambda d: (d.find_element(By.ID, "edit-result").get_attribute("src") or "").endswith("grid.png"))
    assert len(d.find_elements(By.CSS_SELECTOR, "#edit-tiles .tile")) == 2
    wait(d, lambda d: d.execute_script("return document.getElementById('edit-result').naturalWidth") > 0)
    shot(d, "edit")
    set_value(d, "edit-form", "task", "sdedit")
    set_value(d, "edit-form", "strength", 0.6)
    d.find_element(By.ID, "edit-run").click()
    wait(d, lambda d: "done" in d.find_element(By.ID, "edit-status").text)


def test_compare_grid_and_a_bad_request_in_the_page(browser, base):
    d = browser
    d.find_element(By.ID, "tab-compare").click()
    set_value(d, "compare-form", "samplers", "ddim,dpmpp_2m")
    set_value(d, "compare-form", "steps_list", "3,6,12")
    set_value(d, "compare-form", "classes", "5")
    d.find_element(By.ID, "compare-run").click()
    wait(d, lambda d: d.execute_script("return document.getElementById('compare-grid').naturalWidth") > 100)
    shot(d, "compare")
    set_value(d, "compare-form", "steps_list", "3,999")
    d.find_element(By.ID, "compare-run").click()
    msg = wait(d, lambda d: d.find_element(By.ID, "message").text)
    assert "steps must be a whole number from 1 to 250" in msg and "Traceback" not in msg


def test_toy_field_moves_with_t(browser, base):
    d = browser
    d.find_element(By.ID, "tab-toys").click()
    first = wait(d, lambda d: d.find_element(By.ID, "toy-image").get_attribute("src") or None)
    set_value(d, "toys-form", "t", 0.9)
    wait(d, lambda d: d.find_element(By.ID, "toy-image").get_attribute("src") != first)
    wait(d, lambda d: d.execute_script("return document.getElementById('toy-image').naturalWidth") > 0)
    assert d.find_element(By.ID, "toy-t-value").text == "0.90"
    shot(d, "toys")
