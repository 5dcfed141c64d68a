"""Volume drawings (views/volumes.py): the SVG is parsed back (text boxes, volumes, lines), and
the command line's mistakes are clear errors that leave the user's files alone."""
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import netdsl
from netdsl import NetError
from netdsl.cli import main
from netdsl.views import volumes

ROOT = Path(__file__).resolve().parent.parent
NETS = sorted((ROOT / "nets").glob("*.net"))
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def nets():
    return {p.stem: netdsl.load(p) for p in NETS}


def _tree(picture):
    return ET.fromstring(picture.svg())


def _text_boxes(root):
    """Each <text>'s box, from its position, font size and text, the way the layout sizes it."""
    boxes = []
    for t in root.iter(SVG + "text"):
        size = float(t.get("font-size"))
        width = volumes.text_width(t.text, size, t.get("font-weight") == "bold")
        x, y = float(t.get("x")), float(t.get("y"))
        x0 = x - width / 2 if t.get("text-anchor") == "middle" else x
        boxes.append((t.text, x0, y - 0.8 * size, x0 + width, y + 0.25 * size))
    return boxes


def _overlaps(boxes):
    found = []
    boxes = sorted(boxes, key=lambda b: b[1])
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            if b[1] >= a[3]:
                break
            if min(a[4], b[4]) > max(a[2], b[2]):
                found.append((a[0], b[0]))
    return found


def _volumes(root):
    """data-layers of each drawn volume -> its <g>."""
    return {g.get("data-layers"): g for g in root.iter(SVG + "g") if g.get("class") == "volume"}


@pytest.mark.parametrize("collapse", [False, True], ids=["expanded", "collapsed"])
def test_every_net_draws_without_overlapping_labels_and_a_box_for_every_stored_output(nets, collapse):
    for name, net in nets.items():
        picture = volumes.volumes(net, collapse=collapse)
        root = _tree(picture)
        assert _overlaps(_text_boxes(root)) == [], name
        drawn = {n for key in _volumes(root) for n in key.split()}
        stored = {l.name for l in net.layers if l.activations}
        assert stored - drawn == set(), name
        if collapse:  # a slide: 16:9 at 1600 px wide holds every net with its blocks collapsed
            assert picture.width <= 1600 and picture.height <= 900, (name, picture.width, picture.height)


def test_the_overlap_check_finds_a_planted_overlap():
    boxes = [("a", 0, 0, 50, 10), ("b", 40, 5, 90, 15), ("c", 100, 0, 120, 10)]
    assert _overlaps(boxes) == [("a", "b")]


def _label(g):
    return [t.text for t in g.iter(SVG + "text")]


def _front(g):
    """The front face of a volume: its <rect> (x, y, width, height)."""
    rect = [r for r in g.iter(SVG + "rect")][-1]
    return tuple(float(rect.get(k)) for k in ("x", "y", "width", "height"))


def test_alexnet_volumes_read_as_the_lecture_draws_them(nets):
    root = _tree(volumes.volumes(nets["alexnet"]))
    vols = _volumes(root)
    conv1 = vols["conv1 relu1"]  # relu folded into the conv before it, and listed
    assert _label(conv1) == ["conv1", "conv 11x11 /4 · relu", "55x55x96"]
    assert _label(vols["input"])[-1] == "227x227x3"
    assert _label(vols["fc6 relu6 dropout1"]) == ["fc6", "fc · relu · dropout", "4096"]
    assert _label(vols["pool1 norm1"])[1] == "max 3x3 /2 · lrn"
    # sizes keep their order from 227 down to 6, and the smallest is still visible
    heights = [_front(vols[k])[3] for k in ("input", "conv1 relu1", "pool1 norm1", "pool2 norm2", "pool3")]
    assert heights == sorted(heights, reverse=True) and len(set(heights)) == 5
    assert heights[-1] >= 20
    # channels: 96 -> 256 makes the box deeper along the flow
    assert _front(vols["conv2 relu2"])[2] > _front(vols["conv1 relu1"])[2]
    # fully connected layers are thin bars
    assert _front(vols["fc6 relu6 dropout1"])[2] < 10
    # one kernel cut-out (red) for each window layer reading a volume: 5 convs and 3 pools
    kernels = [p for p in root.iter(SVG + "path") if p.get("fill") == "#e74c3c"]
    assert len(kernels) == 8


def test_inception_branches_in_lanes_and_the_residual_shortcut_over_its_path(nets):
    root = _tree(volumes.volumes(nets["googlenet"], focus="inception3a"))
    vols = _volumes(root)
    lanes = {}
    for b in ("b1", "b2", "b3", "b4"):
        g = next(g for k, g in vols.items() if k.startswith(f"inception3a/{b}/"))
        x, y, w, h = _front(g)
        lanes[b] = y + h / 2
    assert len(set(lanes.values())) == 4  # four branches side by side, each in its own lane
    assert any(k.startswith("inception3a/concat1") for k in vols) and "pool2" in vols
    assert "inception3a (inception)" in [t.text for t in root.iter(SVG + "text")]

    root = _tree(volumes.volumes(nets["resnet50"], focus="conv2_x/bottleneck2"))
    texts = [t.text for t in root.iter(SVG + "text")]
    assert "identity" in texts  # bottleneck 2 keeps the shape: its shortcut is the identity
    skips = [p for p in root.iter(SVG + "path") if p.get("stroke") == volumes.SKIP]
    assert skips, "no shortcut drawn"
    path_top = min(_front(g)[1] for k, g in _volumes(root).items() if "/b1/" in k)
    skip_y = min(float(v) for v in re.findall(r"[ ,](-?\d+\.?\d*)", skips[0].get("d"))[1::2])
    assert skip_y < path_top  # the arc runs over the path it skips


def test_collapse_folds_blocks_with_their_counts(nets):
    # He et al. 2016, Table 1: ResNet-50 stages of 3, 4, 6, 3 bottlenecks; ResNet-152 of 3, 8, 36, 3
    for name, counts in (("resnet50", (3, 4, 6, 3)), ("resnet152", (3, 8, 36, 3))):
        texts = [t.text for t in _tree(volumes.volumes(nets[name], collapse=True)).iter(SVG + "text")]
        for n in counts:
            assert f"stage: bottleneck x {n}" in texts, (name, n)


def test_collapsed_residual_stages_keep_their_shortcut_arc(nets):
    # He et al. 2016, Table 1: four residual stages (conv2_x .. conv5_x) in every ResNet; AlexNet,
    # VGG and GoogLeNet (whose modules concatenate) have no shortcut to draw
    for name, net in nets.items():
        root = _tree(volumes.volumes(net, collapse=True))
        arcs = {g.get("data-unit"): g.find(SVG + "path[@class='shortcut']") for g in root.iter(SVG + "g")
                if g.get("class") == "volume"}
        arcs = {unit: arc for unit, arc in arcs.items() if arc is not None}
        expected = {"conv2_x", "conv3_x", "conv4_x", "conv5_x"} if name.startswith("resnet") else set()
        assert set(arcs) == expected, name
        for unit, arc in arcs.items():
            g = next(g for g in root.iter(SVG + "g") if g.get("data-unit") == unit)
            x, y, w, h = _front(g)
            numbers = [float(v) for v in re.findall(r"-?\d+\.?\d*", arc.get("d"))]
            xs, ys = numbers[0::2], numbers[1::2]
            assert xs[0] < x and xs[-1] > x + w, (name, unit)  # from before the box to after it
            faces = [p.get("d") for p in g.iter(SVG + "path") if p.get("fill") not in ("none", volumes.SKIP)]
            top = min(float(v) for d in faces for v in re.findall(r"-?\d+\.?\d*", d)[1::2])
            # the curve's highest point (3/4 of its control points' lift) clears the box's top face
            peak = ys[0] + 0.75 * (ys[1] - ys[0])
            assert 0 < peak < top < y, (name, unit, peak, top, y)
    assert "red arc over a block: the residual shortcuts of the blocks inside it" in \
        [t.text for t in _tree(volumes.volumes(nets["resnet50"], collapse=True)).iter(SVG + "text")]


def test_focus_names_the_layers_feeding_the_block_in_full(nets):
    # conv3_x/bottleneck1 reads the output of conv2_x's last block: its relu after the add
    root = _tree(volumes.volumes(nets["resnet50"], focus="conv3_x/bottleneck1"))
    names = [t.text for t in root.iter(SVG + "text") if t.get("font-weight") == "bold"]
    assert "conv2_x/bottleneck3/relu1" in names and "relu1" not in names
    assert "b1/conv1" in names  # inside the block, names stay short: the block's title says whose


def test_cli_writes_svg_png_and_pdf(tmp_path, capsys):
    for ext, magic in (("svg", b"<?xml"), ("png", b"\x89PNG"), ("pdf", b"%PDF")):
        out = tmp_path / f"lenet.{ext}"
        assert main(["draw", str(ROOT / "nets/lenet5.net"), "--style", "volumes", "-o", str(out)]) == 0
        assert out.read_bytes().startswith(magic)
    assert b"<text" in (tmp_path / "lenet.svg").read_bytes()  # text stays text


def test_python_api(nets):
    picture = netdsl.draw(nets["lenet5"], style="volumes", collapse=True)
    assert "<svg" in picture.svg() and picture._repr_svg_() == picture.svg()
    with pytest.raises(NetError, match="style='cubes'"):
        netdsl.draw(nets["lenet5"], style="cubes")
    html = netdsl.page(nets["lenet5"])
    assert html.startswith("<!DOCTYPE html>")
    # self-contained: nothing to fetch (the SVG namespaces are names, not requests)
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", html)
    assert "<script src" not in html and "<link rel=\"stylesheet\"" not in html


def test_bad_input_is_a_clear_error_and_leaves_the_file_alone(tmp_path, capsys):
    net = str(ROOT / "nets/alexnet.net")
    out = tmp_path / "keep.svg"
    out.write_text("the user's picture")
    with pytest.raises(SystemExit) as exc:
        main(["draw", net, "--style", "cubes", "-o", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--style" in err and "'cubes'" in err

    assert main(["draw", net, "--style", "volumes", "--focus", "conv1", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "--focus conv1: a layer, not a block instance in alexnet" in err
    assert main(["draw", str(ROOT / "nets/googlenet.net"), "--style", "volumes", "--focus", "inception3x",
                 "-o", str(out)]) == 1
    assert "did you mean" in capsys.readouterr().err.lower()
    # the command line refuses the suffix while reading its flags now: a usage mistake (2)
    with pytest.raises(SystemExit) as exc:
        main(["draw", net, "--style", "volumes", "-o", str(tmp_path / "x.jpg")])
    assert exc.value.code == 2
    assert "draws no '.jpg' files" in capsys.readouterr().err
    with pytest.raises(NetError, match="unknown format '.jpg'"):  # and the Python API says so too
        volumes.write(volumes.volumes(netdsl.load(net)), tmp_path / "x.jpg")
    assert not (tmp_path / "x.jpg").exists()
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    assert main(["draw", net, "--style", "volumes", "-o", str(blocker / "out.svg")]) == 1
    assert "notes.txt" in capsys.readouterr().err
    assert main(["page", net, "-o", str(tmp_path / "page.svg")]) == 1
    assert ".html" in capsys.readouterr().err
    assert out.read_text() == "the user's picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.svg", "notes.txt"]  # nothing half-written
