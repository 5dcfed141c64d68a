// netdsl page: fold and unfold each block instance (or run of identical blocks) of the expanded
// diagram on its own. The page cannot run graphviz, and one drawing per combination of folds is
// 2^blocks, so the page keeps graphviz's expanded drawing and, per folded item, hides what is
// inside its cluster(s), puts in its place the box graphviz drew for it (#fold-palette), squeezes
// the freed height out of the picture (a monotone map of y, applied to every point), and re-draws
// the edges that crossed the cluster's border to end on that box. Every fold is laid out again
// from the original coordinates, so any set of folds, in any order, gives the same picture.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("netdsl-data").textContent);
  const palette = document.getElementById("fold-palette");
  const view = document.querySelector('#diagram .view[data-view="layers"]');
  if (!palette || !view || !data.folds) return;
  const svg = view.querySelector("svg");
  const graph = svg.querySelector("g.graph");
  const NS = "http://www.w3.org/2000/svg";
  const owner = data.units.layers || {};
  const PAD = 6;

  // ---- original geometry --------------------------------------------------------------------
  const COORDS = [["path", "d"], ["polygon", "points"], ["polyline", "points"]];
  function pairs(text) {
    const out = [];
    text.replace(/(-?[\d.]+),(-?[\d.]+)/g, function (_, x, y) { out.push([+x, +y]); return _; });
    return out;
  }
  function remember(g) {  // keep every coordinate attribute as graphviz wrote it
    COORDS.forEach(function (c) {
      g.querySelectorAll(c[0]).forEach(function (e) { if (!e.dataset.o) e.dataset.o = e.getAttribute(c[1]); });
    });
    g.querySelectorAll("text").forEach(function (e) { if (!e.dataset.o) e.dataset.o = e.getAttribute("y"); });
  }
  function box(g) {  // [x1, y1, x2, y2] of a group's shapes, in the original coordinates
    const b = [Infinity, Infinity, -Infinity, -Infinity];
    COORDS.forEach(function (c) {
      g.querySelectorAll(c[0]).forEach(function (e) {
        pairs(e.dataset.o || e.getAttribute(c[1])).forEach(function (p) {
          b[0] = Math.min(b[0], p[0]); b[1] = Math.min(b[1], p[1]);
          b[2] = Math.max(b[2], p[0]); b[3] = Math.max(b[3], p[1]);
        });
      });
    });
    return b;
  }
  const titleOf = function (g) { const t = g.querySelector("title"); return t ? t.textContent : ""; };
  const clusters = new Map(), nodes = new Map(), edges = [];
  graph.querySelectorAll(":scope > g").forEach(function (g) {
    remember(g);
    const t = titleOf(g);
    if (g.classList.contains("cluster")) clusters.set(t.replace(/^cluster_/, ""), { g: g, box: box(g) });
    else if (g.classList.contains("node")) nodes.set(t, { g: g, box: box(g) });
    else if (g.classList.contains("edge")) {
      const ends = t.split("->");
      edges.push({ g: g, from: ends[0], to: ends[1] });
    }
  });
  const shapes = new Map();  // fold key -> its box as graphviz drew it
  palette.querySelectorAll("g.node").forEach(function (g) { shapes.set(titleOf(g).replace(/^fold:/, ""), g); });
  const height = svg.viewBox.baseVal.height;
  const heightPt = parseFloat(svg.getAttribute("height"));

  // ---- what each item holds -------------------------------------------------------------------
  const items = new Map();
  data.folds.forEach(function (f) {
    const inside = function (name) {
      return f.instances.some(function (p) { return name === p || name.indexOf(p + "/") === 0; });
    };
    const own = Array.from(clusters.keys()).filter(inside);
    const tops = f.instances.map(function (p) { return clusters.get(p); }).filter(Boolean);
    if (!tops.length || !shapes.has(f.key)) return;
    const b = [Infinity, Infinity, -Infinity, -Infinity];
    tops.forEach(function (c) {
      b[0] = Math.min(b[0], c.box[0]); b[1] = Math.min(b[1], c.box[1]);
      b[2] = Math.max(b[2], c.box[2]); b[3] = Math.max(b[3], c.box[3]);
    });
    items.set(f.key, {
      f: f, box: b, clusters: new Set(own), layers: new Set(f.layers),
      nodes: new Set(f.layers.map(function (l) { return owner[l]; }).filter(function (n) { return nodes.has(n); })),
      run: f.instances.length > 1,
    });
  });

  // ---- toggles --------------------------------------------------------------------------------
  function toggle(key, x, y, folded) {
    const it = items.get(key);
    const g = document.createElementNS(NS, "g");
    g.setAttribute("class", "fold");
    g.dataset.fold = key;
    g.setAttribute("tabindex", "0");
    g.setAttribute("role", "button");
    g.setAttribute("aria-expanded", String(!folded));
    const what = it.run ? it.f.instances[0] + " .. " + it.f.instances[it.f.instances.length - 1] +
      " (" + it.f.instances.length + " identical blocks)" : it.f.name;
    g.setAttribute("aria-label", (folded ? "unfold " : "fold ") + what);
    const text = (folded ? "+" : "\u2212") + (it.run ? "\u00d7" + it.f.instances.length : "");
    const w = it.run ? 30 : 14;
    const r = document.createElementNS(NS, "rect");
    r.setAttribute("x", x); r.setAttribute("y", y); r.setAttribute("width", w); r.setAttribute("height", 14);
    r.setAttribute("rx", 3);
    const t = document.createElementNS(NS, "text");
    t.setAttribute("x", x + w / 2); t.setAttribute("y", y + 11); t.setAttribute("text-anchor", "middle");
    t.textContent = text;
    const tip = document.createElementNS(NS, "title");
    tip.textContent = g.getAttribute("aria-label");
    g.append(tip, r, t);
    return g;
  }
  const clusterToggles = new Map();  // fold key -> the toggle on its (first) cluster
  items.forEach(function (it, key) {
    const c = clusters.get(it.f.instances[0]);
    const g = toggle(key, c.box[0] + 4 + (it.run ? 18 : 0), c.box[1] + 4, false);
    remember(g);
    let last = c.g;  // after the cluster and its other toggle: Tab meets the block, then its toggles
    while (last.nextElementSibling && last.nextElementSibling.classList.contains("fold")) last = last.nextElementSibling;
    last.after(g);
    clusterToggles.set(key, g);
  });

  // ---- layout ---------------------------------------------------------------------------------
  const folded = new Set();
  let added = [];
  function inner(it, kind, name) { return kind === "cluster" ? it.clusters.has(name) : it.nodes.has(name); }
  function layout() {
    added.forEach(function (e) { e.remove(); });
    added = [];
    graph.querySelectorAll(".fold-hidden").forEach(function (e) { e.classList.remove("fold-hidden"); });
    // an item inside another folded one is hidden with it
    const active = Array.from(folded).map(function (k) { return items.get(k); }).filter(function (it) {
      return !Array.from(folded).some(function (k) {
        const o = items.get(k);
        return o !== it && Array.from(it.layers).every(function (l) { return o.layers.has(l); }) &&
          (o.layers.size > it.layers.size || o.f.key < it.f.key);
      });
    }).sort(function (a, b) { return a.box[1] - b.box[1]; });
    const holder = new Map();  // node title -> the active item that hides it
    active.forEach(function (it) { it.nodes.forEach(function (n) { holder.set(n, it); }); });
    // each band: squeeze to the box's height unless something beside it must keep its place
    const bands = active.map(function (it) {
      const shape = box(shapes.get(it.f.key));
      const h = shape[3] - shape[1];
      const y1 = it.box[1], y2 = it.box[3];
      const beside = function (b, skip) {
        return b[1] < y2 && b[3] > y1 && !skip;
      };
      let blocked = false;
      nodes.forEach(function (n, name) { if (!holder.has(name) && beside(n.box, false)) blocked = true; });
      clusters.forEach(function (c, name) {
        const ancestor = c.box[0] <= it.box[0] && c.box[1] <= y1 && c.box[2] >= it.box[2] && c.box[3] >= y2;
        const hidden = active.some(function (o) { return o.clusters.has(name); });
        if (!ancestor && !hidden && beside(c.box, false)) blocked = true;
      });
      const newH = blocked ? y2 - y1 : h + 2 * PAD;
      return { it: it, y1: y1, y2: y2, newH: newH, delta: (y2 - y1) - newH, shape: shape };
    });
    function map(y) {
      let acc = 0;
      for (let i = 0; i < bands.length; i++) {
        const b = bands[i];
        if (y >= b.y2) acc += b.delta;
        else if (y > b.y1) return b.y1 - acc + (y - b.y1) * b.newH / (b.y2 - b.y1);
        else break;
      }
      return y - acc;
    }
    function moveAll(g) {
      COORDS.forEach(function (c) {
        g.querySelectorAll(c[0]).forEach(function (e) {
          if (!e.dataset.o) return;
          e.setAttribute(c[1], e.dataset.o.replace(/(-?[\d.]+)(,)(-?[\d.]+)/g, function (_, x, sep, y) {
            return x + sep + map(+y).toFixed(2);
          }));
        });
      });
      g.querySelectorAll("text").forEach(function (e) { if (e.dataset.o) e.setAttribute("y", map(+e.dataset.o).toFixed(2)); });
      g.querySelectorAll("rect").forEach(function (e) {
        if (!e.dataset.oy) e.dataset.oy = e.getAttribute("y");
        e.setAttribute("y", map(+e.dataset.oy).toFixed(2));
      });
    }
    const hide = function (g) { g.classList.add("fold-hidden"); };
    // the boxes that stand for the folded items
    const placed = new Map();
    bands.forEach(function (b) {
      const it = b.it;
      it.clusters.forEach(function (name) { hide(clusters.get(name).g); });
      items.forEach(function (o, key) { if (o.clusters.size && it.clusters.has(o.f.instances[0])) hide(clusterToggles.get(key)); });
      it.nodes.forEach(function (n) { hide(nodes.get(n).g); });
      const top = map(b.y1) + (b.newH - (b.shape[3] - b.shape[1])) / 2;
      const cx = (it.box[0] + it.box[2]) / 2;
      const dx = cx - (b.shape[0] + b.shape[2]) / 2, dy = top - b.shape[1];
      const g = shapes.get(it.f.key).cloneNode(true);
      g.removeAttribute("id");
      g.querySelector("title").textContent = it.f.name;
      g.setAttribute("transform", "translate(" + dx.toFixed(2) + "," + dy.toFixed(2) + ")");
      g.setAttribute("class", "node folded");
      g.dataset.name = it.f.name;
      g.dataset.layers = it.f.layers.join(" ");
      g.dataset.fold = it.f.key;
      g.setAttribute("tabindex", "0");
      g.setAttribute("role", "button");
      g.setAttribute("aria-label", "block " + it.f.name + (it.run ? " and the " + (it.f.instances.length - 1) +
        " identical blocks after it" : "") + " (folded)");
      const at = [b.shape[0] + dx, top, b.shape[2] + dx, top + b.shape[3] - b.shape[1]];
      const t = toggle(it.f.key, at[0] - (it.run ? 34 : 18), at[1], true);
      graph.append(g, t);
      added.push(g, t);
      placed.set(it, at);
    });
    clusters.forEach(function (c) { if (!c.g.classList.contains("fold-hidden")) moveAll(c.g); });
    nodes.forEach(function (n) { if (!n.g.classList.contains("fold-hidden")) moveAll(n.g); });
    clusterToggles.forEach(function (g) { if (!g.classList.contains("fold-hidden")) moveAll(g); });
    // edges: inside one folded item hidden; across its border drawn again to its box
    const seen = new Set();
    const skipFirst = edges.slice().sort(function (a, b) {  // a plain edge wins over a skip between the same boxes
      return (a.g.querySelector("text") ? 1 : 0) - (b.g.querySelector("text") ? 1 : 0);
    });
    skipFirst.forEach(function (e) {
      const a = holder.get(e.from), b = holder.get(e.to);
      if (a && a === b) { hide(e.g); return; }
      const pair = (a ? "fold:" + a.f.key : e.from) + "->" + (b ? "fold:" + b.f.key : e.to);
      if (seen.has(pair)) { hide(e.g); return; }
      seen.add(pair);
      moveAll(e.g);
      if (!a && !b) return;
      const path = e.g.querySelector("path"), head = e.g.querySelector("polygon");
      const pts = pairs(path.getAttribute("d"));
      let s = pts[0], t = pts[pts.length - 1];
      const clamp = function (x, at) { return Math.max(at[0] + 8, Math.min(at[2] - 8, x)); };
      if (a) { const at = placed.get(a); s = [clamp(s[0], at), at[3]]; }
      if (b) {
        const at = placed.get(b);
        const x = clamp(t[0], at), tip = at[1];
        t = [x, tip - 6];
        if (head) head.setAttribute("points", [[x + 2.1, tip - 6], [x, tip], [x - 2.1, tip - 6], [x + 2.1, tip - 6]]
          .map(function (p) { return p[0].toFixed(2) + "," + p[1].toFixed(2); }).join(" "));
      }
      const mid = (s[1] + t[1]) / 2;
      path.setAttribute("d", "M" + s[0].toFixed(2) + "," + s[1].toFixed(2) + "C" + s[0].toFixed(2) + "," + mid.toFixed(2) +
        " " + t[0].toFixed(2) + "," + mid.toFixed(2) + " " + t[0].toFixed(2) + "," + t[1].toFixed(2));
      const label = e.g.querySelector("text");  // a label once inside a folded band goes to the new curve
      if (label && bands.some(function (band) { return +label.dataset.o > band.y1 && +label.dataset.o < band.y2; })) {
        label.setAttribute("x", ((s[0] + t[0]) / 2 + 4).toFixed(2));
        label.setAttribute("y", mid.toFixed(2));
      }
    });
    // the picture loses the height it squeezed out, at its bottom
    const lost = bands.reduce(function (sum, b) { return sum + b.delta; }, 0);
    const vb = svg.viewBox.baseVal;
    svg.setAttribute("viewBox", [vb.x, vb.y, vb.width, height - lost].join(" "));
    svg.setAttribute("height", (heightPt * (height - lost) / height).toFixed(2) + "pt");
    document.dispatchEvent(new CustomEvent("netdsl:folded"));
  }

  function flip(key, byKey) {
    if (folded.has(key)) folded.delete(key); else folded.add(key);
    layout();
    if (byKey) {  // keep the keyboard where it was: on this item's toggle, now the other way round
      const next = Array.from(graph.querySelectorAll('g.fold[data-fold="' + CSS.escape(key) + '"]'))
        .find(function (g) { return !g.classList.contains("fold-hidden"); });
      if (next) next.focus();
    }
  }
  graph.addEventListener("click", function (e) {
    const g = e.target.closest("g.fold");
    if (!g) return;
    e.stopPropagation();
    flip(g.dataset.fold, false);
  }, true);
  graph.addEventListener("keydown", function (e) {
    const g = e.target.closest ? e.target.closest("g.fold") : null;
    if (!g || (e.key !== "Enter" && e.key !== " ")) return;
    e.preventDefault();
    e.stopPropagation();
    flip(g.dataset.fold, true);
  }, true);
}());
