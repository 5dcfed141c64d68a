"""Diagrams: the SVG that graphviz's dot produced is parsed (clusters, nodes, edges, geometry),
not just the .dot text."""
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import graphviz
import pytest

import netdsl
from netdsl import NetError
from netdsl.cli import main
from netdsl.render import DrawOptions, diagram, write

ROOT = Path(__file__).resolve().parent.parent
NETS = ROOT / "nets"
SVG = "{http://www.w3.org/2000/svg}"


def _numbers(text):
    return [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", text)]


def _bbox(group):
    xs, ys = [], []
    for shape in group:
        if shape.tag in (SVG + "polygon", SVG + "polyline"):
            nums = _numbers(shape.get("points"))
        elif shape.tag == SVG + "path":
            nums = _numbers(shape.get("d"))
        else:
            continue
        xs += nums[0::2]
        ys += nums[1::2]
    return min(xs), min(ys), max(xs), max(ys)


class Drawing:
    """What an SVG from dot shows: clusters with boxes, nodes with positions and texts, edges."""

    def __init__(self, path: Path):
        root = ET.parse(path).getroot()
        self.clusters, self.nodes, self.edges, self.edge_colours = {}, {}, [], {}
        for g in root.iter(SVG + "g"):
            title = g.find(SVG + "title")
            if title is None:
                continue
            kind = g.get("class")
            if kind == "cluster":
                self.clusters[title.text] = _bbox(g)
            elif kind == "node":
                texts = [t.text or "" for t in g.iter(SVG + "text")]
                first = next(g.iter(SVG + "text"))
                self.nodes[title.text] = ((float(first.get("x")), float(first.get("y"))), texts)
            elif kind == "edge":
                tail, head = title.text.split("->")
                self.edges.append((tail, head))
                path = g.find(SVG + "path")
                self.edge_colours[(tail, head)] = path.get("stroke") if path is not None else None

    def inside(self, cluster):
        x0, y0, x1, y1 = self.clusters[cluster]
        return {n for n, ((x, y), _) in self.nodes.items() if x0 <= x <= x1 and y0 <= y <= y1}

    def into(self, node):
        return [t for t, h in self.edges if h == node]


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    out = tmp_path_factory.mktemp("gallery")
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gallery.py"), str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return out


def test_every_net_is_drawn(gallery):
    for net in NETS.glob("*.net"):
        assert (gallery / f"{net.stem}.svg").stat().st_size > 1000
    for view in ("googlenet-inception3a", "resnet50-bottleneck", "resnet152-collapsed", "alexnet-vs-zfnet"):
        assert (gallery / f"{view}.svg").is_file()


def test_googlenet_has_nine_inception_clusters_of_four_branches(gallery):
    d = Drawing(gallery / "googlenet.svg")
    modules = sorted(c for c in d.clusters if re.fullmatch(r"cluster_inception\d[a-e]", c))
    assert [m[len("cluster_"):] for m in modules] == [
        "inception3a", "inception3b", "inception4a", "inception4b", "inception4c", "inception4d", "inception4e",
        "inception5a", "inception5b"]
    for cluster in modules:
        name = cluster[len("cluster_"):]
        inside = d.inside(cluster)
        assert f"{name}/concat1" in inside
        feeding = d.into(f"{name}/concat1")
        assert sorted(f.split("/")[1] for f in feeding) == ["b1", "b2", "b3", "b4"]  # four branches
        assert all(f in inside for f in feeding)
    # the side outputs are drawn as their own clusters
    assert {"cluster_aux1", "cluster_aux2"} <= set(d.clusters)


def test_resnet50_has_16_residual_clusters_each_with_a_skip_edge(gallery):
    d = Drawing(gallery / "resnet50.svg")
    blocks = [c for c in d.clusters if re.search(r"/bottleneck\d+$", c)]
    assert len(blocks) == 16
    for cluster in blocks:
        path = cluster[len("cluster_"):]
        add = f"{path}/add1"
        inside = d.inside(cluster)
        assert add in inside
        convs = {n for n in inside if n.startswith(f"{path}/b1/")}
        skips = [t for t in d.into(add) if t not in convs]
        assert len(skips) == 1, (path, d.into(add))
        skip = skips[0]
        # identity: the edge comes from outside the block; projection: from the shortcut's bn,
        # which is fed from outside the block
        origin = skip if skip == f"{path}/shortcut/bn" else None
        if origin:
            assert d.into(f"{path}/shortcut/conv")[0] not in inside
        else:
            assert skip not in inside
        assert d.edge_colours[(skip, add)] == "#c0392b"  # drawn as the skip


def test_resnet152_collapsed_is_one_node_per_stage_with_its_repeat_count(gallery):
    d = Drawing(gallery / "resnet152-collapsed.svg")
    stages = {n: " ".join(texts) for n, (_, texts) in d.nodes.items() if any("stage:" in t for t in texts)}
    assert sorted(stages) == ["conv2_x", "conv3_x", "conv4_x", "conv5_x"]
    assert "bottleneck x 3" in stages["conv2_x"] and "bottleneck x 8" in stages["conv3_x"]
    assert "bottleneck x 36" in stages["conv4_x"] and "bottleneck x 3" in stages["conv5_x"]
    assert "1024x14x14" in stages["conv4_x"]


def test_labels_show_the_layer_as_written_and_its_shape(gallery):
    d = Drawing(gallery / "alexnet.svg")
    texts = " ".join(d.nodes["conv1"][1])
    assert "conv 96 11x11 /4 · relu" in texts and "96x55x55" in texts and "34,944 params" in texts
    d = Drawing(gallery / "googlenet-inception3a.svg")
    assert "256x28x28" in " ".join(d.nodes["inception3a/concat1"][1])


def test_identical_blocks_fold_to_x_n(tmp_path):
    net = netdsl.compile_source("""
input 8x8x8
block res(c) { add { { conv c 3x3 pad 1; relu; conv c 3x3 pad 1 } shortcut }; relu }
repeat 4 res 8
fc 10
""")
    out = write(diagram(net, DrawOptions(depth=0)), tmp_path / "fold.svg")
    d = Drawing(out)
    (run,) = [texts for _, texts in d.nodes.values() if any("res x 4" in t for t in texts)]
    assert any("res1 .. res4" in t for t in run)


def test_depth_and_highlight(tmp_path):
    net = netdsl.load(NETS / "resnet50.net")
    d = Drawing(write(diagram(net, DrawOptions(depth=1, highlight=("conv4_x",))), tmp_path / "d.svg"))
    assert {"cluster_conv2_x", "cluster_conv5_x"} <= set(d.clusters)
    assert not any("/bottleneck" in c for c in d.clusters)  # depth 1: bottlenecks are single nodes
    with pytest.raises(NetError, match="--highlight conv9_x: no layer or block"):
        diagram(net, DrawOptions(highlight=("conv9_x",)))


def test_python_api_gives_a_graphviz_digraph():
    dot = diagram(netdsl.load(NETS / "lenet5.net"), DrawOptions(shapes=True, rankdir="LR"))
    assert isinstance(dot, graphviz.Digraph)
    assert "rankdir=LR" in dot.source and "6x28x28" in dot.source


def test_dot_text_needs_no_graphviz_and_the_missing_dot_error_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("netdsl.views.render.dot_program", lambda: None)
    assert main(["draw", str(NETS / "lenet5.net"), "-o", str(tmp_path / "l.dot")]) == 0
    assert (tmp_path / "l.dot").read_text().startswith("digraph")
    assert main(["draw", str(NETS / "lenet5.net"), "-o", str(tmp_path / "l.svg")]) == 1
    err = capsys.readouterr().err
    assert "'dot' program is not installed" in err and "apt-get install graphviz" in err and ".dot" in err
    assert not (tmp_path / "l.svg").exists()


def test_draw_formats(tmp_path):
    for ext, magic in ((".svg", b"<?xml"), (".png", b"\x89PNG"), (".pdf", b"%PDF")):
        assert main(["draw", str(NETS / "lenet5.net"), "-o", str(tmp_path / f"l{ext}")]) == 0
        assert (tmp_path / f"l{ext}").read_bytes().startswith(magic)
    with pytest.raises(SystemExit) as usage:  # a format netdsl does not draw is a usage mistake (issue 22)
        main(["draw", str(NETS / "lenet5.net"), "-o", str(tmp_path / "l.gif")])
    assert usage.value.code == 2 and not (tmp_path / "l.gif").exists()


def test_diff_alexnet_to_zfnet(tmp_path, capsys):
    assert main(["diff", str(NETS / "alexnet.net"), str(NETS / "zfnet.net"), "-o", str(tmp_path / "d.svg")]) == 0
    out = capsys.readouterr().out
    assert "~ conv1" in out and "conv 96 11x11 /4  =>  conv 96 7x7 /2 pad 1" in out
    assert "output 96x55x55 => 96x110x110" in out and "receptive field 11x11 => 7x7" in out
    assert "total params        62,378,344 =>      107,627,624  (+45,249,280)" in out
    d = Drawing(tmp_path / "d.svg")
    assert {"cluster_A", "cluster_B"} <= set(d.clusters)
    assert "A_conv1" in d.nodes and "B_conv1" in d.nodes


def test_diff_of_a_network_with_itself(capsys):
    assert main(["diff", str(NETS / "lenet5.net"), str(NETS / "lenet5.net")]) == 0
    assert "no differences" in capsys.readouterr().out
