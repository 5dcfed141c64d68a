"""The interactive page in a real browser: the system's headless Chromium, driven by selenium.

One browser for the whole module. Where Chromium or its driver is not installed (scripts/test
installs Debian's `chromium` and `chromium-driver`), every test here skips and says why.
"""
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

import netdsl
from netdsl.views import page, volumes

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1000")


def _missing() -> str | None:
    for path in (CHROMIUM, DRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is not installed (apt-get install chromium chromium-driver; scripts/test does)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="module")
def browser():
    reason = _missing()
    if reason and os.environ.get("CI"):  # CI installs Chromium (scripts/test): a missing one is a failure there
        pytest.fail(f"CI must run the browser tests: {reason}")
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="netdsl-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pages")
    out = {}
    for name in ("alexnet", "googlenet", "vgg16", "resnet50"):
        out[name] = page.write(netdsl.load(ROOT / "nets" / f"{name}.net"), folder / f"{name}.html")
    return out


def _open(driver, path: Path) -> None:
    driver.get_log("browser")
    driver.get_log("performance")  # start both logs afresh for this page
    driver.get(path.as_uri())


def _explain_text(driver) -> str:
    return driver.find_element("id", "explain").text


def _check_clean(driver, path: Path) -> None:
    """No console errors; no request for anything but the file itself (and data: URLs)."""
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == [], errors
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    assert path.as_uri() in urls, "the performance log saw no request at all: it cannot vouch for the page"
    outside = [u for u in urls if u != path.as_uri() and not u.startswith("data:")]
    assert outside == [], outside


def test_alexnet_conv1_shows_its_arithmetic(browser, pages):
    _open(browser, pages["alexnet"])
    browser.find_element("css selector", '#diagram .shown g.node[data-name="conv1"]').click()
    text = _explain_text(browser)
    assert "(227 - 11)/4 + 1 = 55" in text  # the lecture's worked size
    assert "11*11*3*96 = 34,848" in text   # 11*11*3 weights per filter, 96 filters
    assert browser.find_element("id", "selected").text.startswith("conv1")
    node = browser.find_element("css selector", '#diagram .shown g.node[data-name="conv1"]')
    assert "selected" in node.get_attribute("class")
    # its receptive field path: the input box is highlighted, a later layer is not
    assert "rf" in browser.find_element("css selector", '#diagram .shown g.node[data-name="input"]').get_attribute("class")
    assert "rf" not in browser.find_element("css selector", '#diagram .shown g.node[data-name="conv2"]').get_attribute("class")
    # the volumes tab: the same layer drawn as a volume and selectable there too
    browser.find_element("id", "tab-volumes").click()
    volume = browser.find_element("css selector", '#volumes .shown g.volume[data-name="pool1"]')
    volume.click()
    assert "(55 - 3)/2 + 1 = 27" in _explain_text(browser)
    _check_clean(browser, pages["alexnet"])


def test_googlenet_inception3a_shows_its_branches(browser, pages):
    _open(browser, pages["googlenet"])
    browser.find_element("css selector", '.toggle[data-view="blocks"]').click()
    browser.find_element("css selector", '#diagram .shown g.node[data-name="inception3a"]').click()
    text = _explain_text(browser)
    assert browser.find_element("id", "selected").text.startswith("inception3a")
    for branch in ("b1", "b2", "b3", "b4"):  # one row per branch
        assert re.search(rf"^{branch}\s", text, re.M), text
    assert "64 + 128 + 32 + 32 = 256" in text  # Szegedy et al., Table 1: 3a's output depth
    # back to all layers: the block's cluster is selectable too
    browser.find_element("css selector", '.toggle[data-view="layers"]').click()
    browser.execute_script('document.querySelector(\'#diagram .shown g.cluster[data-name="inception3a"]\')'
                           '.dispatchEvent(new MouseEvent("click", {bubbles: true}))')
    assert "64 + 128 + 32 + 32 = 256" in _explain_text(browser)
    _check_clean(browser, pages["googlenet"])


def test_search_keyboard_sorting_and_large_text(browser, pages):
    from selenium.webdriver.common.keys import Keys
    _open(browser, pages["vgg16"])
    box = browser.find_element("id", "search-box")
    box.send_keys("conv5_3", Keys.ENTER)
    assert browser.find_element("id", "selected").text.startswith("conv5_3")
    node = browser.find_element("css selector", '#diagram .shown g.node[data-name="conv5_3"]')
    assert "selected" in node.get_attribute("class")
    row = browser.find_element("css selector", '#table tr[data-name="conv5_3"]')
    assert "selected" in row.get_attribute("class")
    assert "512x14x14" in _explain_text(browser)

    # keyboard: Tab from the search box reaches the diagram's first box; Enter selects it
    box.click()
    for _ in range(12):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        if browser.switch_to.active_element.get_attribute("data-name"):
            break
    active = browser.switch_to.active_element
    name = active.get_attribute("data-name")
    assert name == "input", f"Tab stopped at {active.tag_name} {active.get_attribute('outerHTML')[:80]}"
    active.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("data-name") == "conv1_1"
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    assert browser.find_element("id", "selected").text.startswith("conv1_1")

    # sorting: params, largest first on the second click; fc6 is VGG16's largest layer
    # (7*7*512*4096 + 4096 = 102,764,544 parameters, Simonyan & Zisserman's table)
    header = browser.find_element("xpath", '//th/button[text()="params"]')
    header.click()
    header.click()
    first = browser.find_elements("css selector", "#table tbody tr")[0]
    assert first.get_attribute("data-name") == "fc6"
    assert "102,764,544" in first.text
    header.click()
    assert browser.find_element("xpath", '//th[button[text()="params"]]').get_attribute("aria-sort") == "ascending"

    size = lambda: browser.execute_script("return getComputedStyle(document.body).fontSize")  # noqa: E731
    before = size()
    browser.find_element("id", "large-text").click()
    assert float(size().rstrip("px")) >= 1.4 * float(before.rstrip("px"))
    _check_clean(browser, pages["vgg16"])


def _shown(driver, css: str) -> list[str]:
    """The data-name (or title) of every element matching css that the browser draws."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).filter(e => e.getClientRects().length)"
        ".map(e => e.dataset.name || e.querySelector('title').textContent)", css)


def test_resnet50_folds_one_block_or_one_run_on_its_own(browser, pages):
    from selenium.webdriver.common.keys import Keys
    _open(browser, pages["resnet50"])
    stage = "#diagram .shown g.cluster"
    bottlenecks = [f"conv3_x/bottleneck{i}" for i in range(1, 5)]
    assert set(bottlenecks) <= set(_shown(browser, stage))
    height = browser.execute_script("return document.querySelector('#diagram .shown svg').viewBox.baseVal.height")
    # a layer inside the block to fold selected first: after the fold its block's box holds it
    browser.find_element("id", "search-box").send_keys("conv3_x/bottleneck2/b1/conv1", Keys.ENTER)
    browser.find_element("css selector", '#diagram .shown g.fold:not(.fold-hidden)[data-fold="conv3_x/bottleneck2"]').click()
    shown = set(_shown(browser, stage))
    assert "conv3_x/bottleneck2" not in shown
    assert {"conv3_x", "conv3_x/bottleneck1", "conv3_x/bottleneck3", "conv3_x/bottleneck4", "conv4_x"} <= shown
    assert "conv3_x/bottleneck2/b1/conv1" not in _shown(browser, "#diagram .shown g.node")
    box = browser.find_element("css selector", '#diagram .shown g.folded[data-name="conv3_x/bottleneck2"]')
    assert "selected" in box.get_attribute("class")
    assert "bottleneck: 10 layers" in box.text  # conv, bn, relu x 3, the add and its relu, as --collapse says
    # the freed height left the picture: one bottleneck's cluster is taller than its box
    assert browser.execute_script("return document.querySelector('#diagram .shown svg').viewBox.baseVal.height") < height
    # a layer after the folded block: the receptive-field path runs through the folded box
    browser.find_element("css selector", '#diagram .shown g.node[data-name="conv3_x/bottleneck3/b1/conv1"]').click()
    assert "rf" in box.get_attribute("class") and "selected" not in box.get_attribute("class")
    # the keyboard: the fold's toggle is a Tab stop; Enter unfolds and keeps the focus on its toggle
    toggle = browser.find_element("css selector", '#diagram .shown g.fold:not(.fold-hidden)[data-fold="conv3_x/bottleneck2"]')
    assert toggle.get_attribute("aria-expanded") == "false"
    browser.execute_script("arguments[0].focus()", toggle)
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    assert set(bottlenecks) <= set(_shown(browser, stage))
    assert "conv3_x/bottleneck2/b1/conv1" in _shown(browser, "#diagram .shown g.node")
    assert browser.execute_script("return document.querySelector('#diagram .shown svg').viewBox.baseVal.height") \
        == height
    active = browser.switch_to.active_element
    assert active.get_attribute("data-fold") == "conv3_x/bottleneck2"
    assert active.get_attribute("aria-expanded") == "true"
    # Tab goes on to the next toggle: the run of three identical bottlenecks from this one on (what
    # --collapse marks x 3); Enter folds the run
    active.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("data-fold") == "run:conv3_x/bottleneck2"
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    shown = set(_shown(browser, stage))
    assert not {"conv3_x/bottleneck2", "conv3_x/bottleneck3", "conv3_x/bottleneck4"} & shown
    assert {"conv3_x", "conv3_x/bottleneck1", "conv4_x/bottleneck1"} <= shown
    assert "bottleneck x 3" in browser.find_element("css selector", '#diagram .shown g.folded').text
    # and the whole stage on top of it; unfolding the stage gives the run back still folded
    browser.find_element("css selector", '#diagram .shown g.fold[data-fold="conv3_x"]').click()
    assert not any(n.startswith("conv3_x") for n in _shown(browser, stage))
    assert _shown(browser, "#diagram .shown g.folded") == ["conv3_x"]
    browser.find_element("css selector", '#diagram .shown g.folded + g.fold[data-fold="conv3_x"]').click()
    assert _shown(browser, "#diagram .shown g.folded") == ["conv3_x/bottleneck2"]
    _check_clean(browser, pages["resnet50"])


def test_volume_labels_do_not_overlap_as_chromium_draws_them(browser, tmp_path):
    """The layout's text widths are upper bounds of what the browser draws, and no two of the
    drawn text boxes overlap, for every net and both levels of collapse."""
    script = """
      const boxes = Array.from(document.querySelectorAll('text')).map(t => {
        const b = t.getBBox(); return [t.textContent, b.x, b.y, b.width, b.height,
          parseFloat(t.getAttribute('font-size')), t.getAttribute('font-weight') === 'bold'];});
      return boxes;"""
    for path in sorted((ROOT / "nets").glob("*.net")):
        net = netdsl.load(path)
        for collapse in (False, True):
            svg = tmp_path / f"{path.stem}-{collapse}.svg"
            volumes.write(volumes.volumes(net, collapse=collapse), svg)
            browser.get(svg.as_uri())
            boxes = browser.execute_script(script)
            assert boxes, svg
            for text, x, y, w, h, size, bold in boxes:
                assert w <= volumes.text_width(text, size, bold) + 0.5, (svg.name, text, w)
            boxes.sort(key=lambda b: b[1])
            for i, a in enumerate(boxes):
                for b in boxes[i + 1:]:
                    if b[1] >= a[1] + a[3]:
                        break
                    overlap = min(a[2] + a[4], b[2] + b[4]) - max(a[2], b[2])
                    assert overlap <= 0.5, (svg.name, a[0], b[0])
