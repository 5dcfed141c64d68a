"""`netdsl page`: one self-contained HTML file to explore a network in a browser, offline.

The page holds the graphviz diagram (expanded and with blocks collapsed), the volume drawing as a
second tab, the summary table, and one JSON export of the analysed network: `summary_dict` (the
`netdsl summary --json` object) plus what the page needs to show a selection (each layer's and
block's explanation, which diagram box stands for which layer). Scripts and styles are inline
(page_assets/), nothing is fetched, so the file works from a file:// URL with no server.
"""
from __future__ import annotations

import html
import json

import graphviz
import os
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

from ..compiler import Network
from ..errors import NetError
from ..files import write_atomic
from ..ops import STYLES
from .explain import explain
from .render import DrawOptions, Unit, _collapsed_label, _units, diagram, dot_program
from .summary import summary_dict
from .volumes import volumes


def _blocks(net: Network) -> dict[str, dict[str, Any]]:
    """Every block instance: its kind and its layers, in order."""
    found: dict[str, dict[str, Any]] = {}
    for layer in net.layers:
        for path, kind in layer.block:
            found.setdefault(path, {"kind": kind, "layers": []})["layers"].append(layer.name)
    return found


def block_explanation(net: Network, path: str) -> str:
    """A block instance's explanation: the document `netdsl explain FILE BLOCK` prints, as HTML
    (its tables as tables, its arithmetic as preformatted lines: `--format html`)."""
    return explain(net, path).to("html")


def page_data(net: Network) -> dict[str, Any]:
    """The page's one export: summary_dict plus explanations and the diagram's boxes."""
    data = summary_dict(net)
    data["explain"] = {l.name: explain(net, l.name).to("html") for l in net.layers}  # explain --format html
    data["blocks"] = {path: {"kind": b["kind"], "layers": b["layers"], "explain": block_explanation(net, path)}
                      for path, b in _blocks(net).items()}
    return data


def _svg(net: Network, opts: DrawOptions) -> tuple[str, dict[str, str]]:
    """The graphviz drawing as inline SVG, and which box (unit id) holds each layer."""
    if dot_program() is None:
        raise NetError("the page needs graphviz's 'dot' program to draw the diagram",
                       hint="install graphviz (apt-get install graphviz, brew install graphviz)")
    out = _dot_svg(diagram(net, opts), "diagram")
    _, owner = _units(net, opts)
    return out, owner


def _dot_svg(dot: graphviz.Digraph, what: str) -> str:
    try:
        out = subprocess.run(["dot", "-Tsvg"], input=dot.source.encode("utf-8"), capture_output=True, check=True,
                             timeout=600).stdout.decode("utf-8")
    except subprocess.CalledProcessError as exc:
        raise NetError(f"dot failed to draw the page's {what}: {exc.stderr.decode(errors='replace').strip()}") \
            from None
    return out[out.index("<svg"):]


def fold_items(net: Network) -> list[tuple[str, Unit]]:
    """What a person can fold on its own in the page's expanded diagram: every block instance,
    and every run of identical instances that `--collapse` would mark x N (ResNet-50's
    conv3_x/bottleneck2 .. bottleneck4), each as the collapsed diagram's unit for it."""
    items: list[tuple[str, Unit]] = []
    members: dict[str, list] = {}
    for layer in net.layers:
        for depth, (path, kind) in enumerate(layer.block):
            if path not in members:
                members[path] = [depth, kind, []]
            members[path][2].append(layer)
    for path, (depth, kind, layers) in members.items():
        items.append((path, Unit(path, layers, layers[0].block[:depth], collapsed=(path, kind), instances=[path])))
    deepest = max((len(l.block) for l in net.layers), default=0)
    for depth in range(deepest):
        units, _ = _units(net, DrawOptions(depth=depth))
        items += [("run:" + u.id, u) for u in units if u.collapsed and len(u.instances) > 1]
    return items


def _fold_palette(net: Network, items: list[tuple[str, Unit]]) -> str:
    """One graphviz box per foldable item, drawn as the collapsed diagram draws it. The page
    keeps these hidden and swaps one in for a block's cluster when a person folds it: the page
    cannot run graphviz itself, and one drawing per combination of folds would be 2^blocks."""
    dot = graphviz.Digraph(name="folds", node_attr={
        "shape": "box", "style": "filled", "fontname": "Helvetica", "fontsize": "10", "margin": "0.12,0.06",
        "penwidth": "0.8", "fillcolor": STYLES["block"][0] if "block" in STYLES else "#fdebd0"})
    for key, unit in items:
        dot.node("fold:" + key, _collapsed_label(net, unit), shape="box3d" if len(unit.instances) > 1 else "box")
    return _dot_svg(dot, "folded blocks")


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("page_assets", name).read_text(encoding="utf-8")


def page(net: Network) -> str:
    """The page's HTML text."""
    data = page_data(net)
    has_blocks = bool(data["blocks"])
    views = [("layers", "all layers", DrawOptions(), False)]
    if has_blocks:
        views.append(("blocks", "blocks collapsed", DrawOptions(depth=0), True))
    diagrams, volume_svgs, owners = [], [], {}
    for key, label, opts, collapse in views:
        svg, owner = _svg(net, opts)
        owners[key] = owner
        diagrams.append(f'<div class="view" data-view="{key}" aria-label="diagram, {label}">{svg}</div>')
        volume_svgs.append(f'<div class="view" data-view="{key}" aria-label="volumes, {label}">'
                           f'{volumes(net, collapse=collapse).svg().split("?>", 1)[-1]}</div>')
    data["units"] = owners
    items = fold_items(net)
    data["folds"] = [{"key": key, "name": unit.instances[0], "instances": unit.instances,
                      "layers": [l.name for l in unit.layers]} for key, unit in items]
    palette = f'<div id="fold-palette" hidden aria-hidden="true">{_fold_palette(net, items)}</div>' if items else ""
    toggles = "".join(f'<button type="button" class="toggle" data-view="{k}" aria-pressed="{str(i == 0).lower()}">'
                      f'{html.escape(label)}</button>' for i, (k, label, _, _) in enumerate(views))
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    name = html.escape(net.name)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{name} - netdsl</title>
<style>
{_asset("page.css")}
</style>
</head>
<body>
<header>
  <h1>{name}</h1>
  <form id="search" role="search" autocomplete="off">
    <label for="search-box">Find a layer or block</label>
    <input id="search-box" type="search" list="names" placeholder="conv1, inception3a ...">
    <datalist id="names"></datalist>
    <button type="submit">Find</button>
  </form>
  <label class="large"><input type="checkbox" id="large-text"> large text</label>
</header>
<main>
  <section id="pictures">
    <div role="tablist" aria-label="pictures">
      <button role="tab" id="tab-diagram" aria-selected="true" aria-controls="diagram">diagram</button>
      <button role="tab" id="tab-volumes" aria-selected="false" aria-controls="volumes" tabindex="-1">volumes</button>
      <span class="toggles">{toggles}</span>
    </div>
    <div id="diagram" role="tabpanel" aria-labelledby="tab-diagram">{"".join(diagrams)}</div>
    <div id="volumes" role="tabpanel" aria-labelledby="tab-volumes" hidden>{"".join(volume_svgs)}</div>
    {palette}
  </section>
  <aside id="details" aria-live="polite">
    <h2 id="selected">Select a layer or block</h2>
    <div id="explain"><pre>Click a box in the diagram or the volumes, a row of the table, or search by name.
Tab moves between the boxes; Enter selects one.</pre></div>
  </aside>
  <section id="summary">
    <h2>Summary</h2>
    <table id="table"><thead></thead><tbody></tbody></table>
    <div id="totals"></div>
  </section>
</main>
<script type="application/json" id="netdsl-data">{payload}</script>
<script>
{_asset("page.js")}
</script>
<script>
{_asset("fold.js")}
</script>
</body>
</html>
"""


def write(net: Network, out: str | os.PathLike) -> Path:
    """The page, written atomically to an .html file."""
    target = Path(out)
    if target.suffix.lower() not in (".html", ".htm"):
        raise NetError(f"-o {out}: a page is an .html file", hint=f"-o {target.with_suffix('.html').name}")
    write_atomic(target, page(net).encode("utf-8"))
    return target
