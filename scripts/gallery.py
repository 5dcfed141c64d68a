"""Draw every network in nets/ and the gallery views the README shows: graphviz diagrams,
volume drawings (the lecture's boxes), and screenshots of the interactive page (through the
system's headless Chromium, where it is installed).

    python scripts/gallery.py [OUTDIR]      (default docs/gallery)
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netdsl  # noqa: E402
from netdsl.views.diff import compare, side_by_side  # noqa: E402
from netdsl.render import DrawOptions, diagram, write  # noqa: E402
from netdsl.views import page, volumes  # noqa: E402

VIEWS = [  # (file name, net, options)
    ("googlenet-inception3a.svg", "googlenet", DrawOptions(focus="inception3a", shapes=True)),
    ("resnet50-bottleneck.svg", "resnet50", DrawOptions(focus="conv3_x/bottleneck1")),
    ("resnet50-stages.svg", "resnet50", DrawOptions(depth=1)),
    ("resnet152-collapsed.svg", "resnet152", DrawOptions(depth=0)),
]


def main(out: Path) -> list[Path]:
    written = []
    for path in sorted((ROOT / "nets").glob("*.net")):
        net = netdsl.load(path)
        written.append(write(diagram(net), out / f"{path.stem}.svg"))
    for name, net_name, opts in VIEWS:
        written.append(write(diagram(netdsl.load(ROOT / "nets" / f"{net_name}.net"), opts), out / name))
    a, b = netdsl.load(ROOT / "nets" / "alexnet.net"), netdsl.load(ROOT / "nets" / "zfnet.net")
    written.append(write(side_by_side(a, b, compare(a, b)), out / "alexnet-vs-zfnet.svg"))
    for name, net_name, options in VOLUMES:
        picture = volumes.volumes(netdsl.load(ROOT / "nets" / f"{net_name}.net"), **options)
        for ext in ("svg", "png"):
            written.append(volumes.write(picture, out / f"{name}.{ext}"))
    written += screenshots(out)
    return written


VOLUMES = [  # (file name without extension, net, options)
    ("volumes-lenet5", "lenet5", {}),
    ("volumes-alexnet", "alexnet", {}),
    ("volumes-vgg16", "vgg16", {}),
    ("volumes-googlenet-collapsed", "googlenet", {"collapse": True}),
    ("volumes-resnet50-collapsed", "resnet50", {"collapse": True}),
    ("volumes-googlenet-inception3a", "googlenet", {"focus": "inception3a"}),
    ("volumes-resnet50-bottleneck", "resnet50", {"focus": "conv3_x/bottleneck1"}),
]


def screenshots(out: Path) -> list[Path]:
    """The page with one layer selected (AlexNet's conv1), one block (GoogLeNet's inception3a), and
    ResNet-50 with its conv3_x stage folded on its own (and selected)."""
    import shutil
    import tempfile
    if not (Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()):
        print("no /usr/bin/chromium: page screenshots skipped", file=sys.stderr)
        return []
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="netdsl-gallery-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,900", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    written = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for net_name, view, name, shot in (("alexnet", "layers", "conv1", "page-alexnet-conv1.png"),
                                               ("googlenet", "blocks", "inception3a", "page-googlenet-inception3a.png")):
                html = page.write(netdsl.load(ROOT / "nets" / f"{net_name}.net"), Path(tmp) / f"{net_name}.html")
                driver.get(html.as_uri())
                driver.find_element("css selector", f'.toggle[data-view="{view}"]').click()
                driver.find_element("css selector", f'#diagram .shown g.node[data-name="{name}"]').click()
                driver.execute_script("document.activeElement.blur()")
                driver.save_screenshot(str(out / shot))
                written.append(out / shot)
            # ResNet-50 with one stage folded by its own toggle, the others still expanded
            html = page.write(netdsl.load(ROOT / "nets" / "resnet50.net"), Path(tmp) / "resnet50.html")
            driver.get(html.as_uri())
            driver.find_element("css selector", '#diagram .shown g.fold[data-fold="conv3_x"]').click()
            folded = driver.find_element("css selector", '#diagram .shown g.folded[data-name="conv3_x"]')
            folded.click()
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); document.activeElement.blur()",
                                  folded)
            driver.save_screenshot(str(out / "page-resnet50-folded.png"))
            written.append(out / "page-resnet50-folded.png")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "gallery"
    for p in main(target):
        print(f"wrote {p}")
