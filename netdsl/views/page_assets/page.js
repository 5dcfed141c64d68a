// netdsl page: select a layer or block (click, Enter, search or table), show its explanation and
// its receptive-field path; sort the table; switch pictures and text size. No network access.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("netdsl-data").textContent);
  const layers = new Map(data.layers.map(function (l) { return [l.name, l]; }));
  const blocks = data.blocks;
  const names = Array.from(layers.keys()).concat(Object.keys(blocks));
  const fmt = function (n) { return n ? n.toLocaleString("en-US") : "-"; };
  const shapeText = function (s) { return s.join("x"); };

  // ---- selectable boxes: graphviz nodes and clusters, volume groups -------------------------
  function mark(g, name) {
    g.dataset.name = name;
    g.setAttribute("tabindex", "0");
    g.setAttribute("role", "button");
    g.setAttribute("aria-label", (blocks[name] ? "block " : "layer ") + name);
  }
  document.querySelectorAll("#diagram .view").forEach(function (view) {
    view.querySelectorAll("g.node, g.cluster").forEach(function (g) {
      const title = g.querySelector("title");
      if (!title) return;
      const name = title.textContent.replace(/^cluster_/, "");
      if (layers.has(name) || blocks[name]) mark(g, name);
    });
  });
  document.querySelectorAll("#volumes g.volume").forEach(function (g) { mark(g, g.dataset.unit); });

  // ---- views: tabs and the expanded / collapsed toggle ----------------------------------------
  let current = "layers";
  function showView(key) {
    current = key;
    document.querySelectorAll(".view").forEach(function (v) { v.classList.toggle("shown", v.dataset.view === key); });
    document.querySelectorAll(".toggle").forEach(function (b) { b.setAttribute("aria-pressed", String(b.dataset.view === key)); });
  }
  document.querySelectorAll(".toggle").forEach(function (b) {
    b.addEventListener("click", function () { showView(b.dataset.view); if (selected) select(selected, false); });
  });
  const tabs = Array.from(document.querySelectorAll('[role="tab"]'));
  tabs.forEach(function (tab) {
    tab.addEventListener("click", function () {
      tabs.forEach(function (t) {
        const on = t === tab;
        t.setAttribute("aria-selected", String(on));
        document.getElementById(t.getAttribute("aria-controls")).hidden = !on;
      });
      if (selected) select(selected, false);
    });
  });
  showView(current);

  // ---- selection ------------------------------------------------------------------------------
  let selected = null;
  function ancestors(start) {
    const seen = new Set(start);
    const todo = Array.from(start);
    while (todo.length) {
      const l = layers.get(todo.pop());
      if (!l) continue;
      l.inputs.forEach(function (s) { if (!seen.has(s)) { seen.add(s); todo.push(s); } });
    }
    return seen;
  }
  function select(name, scroll) {
    const isBlock = !layers.has(name);
    const own = isBlock ? blocks[name].layers : [name];
    const path = ancestors(own);  // the layers its receptive field passes through
    selected = name;
    const heading = document.getElementById("selected");
    heading.textContent = isBlock ? name + " (" + blocks[name].kind + " block)" : name + " (" + layers.get(name).op + ")";
    // netdsl's own HTML (explain --format html: names escaped by it), not text from the page
    document.getElementById("explain").innerHTML = isBlock ? blocks[name].explain : data.explain[name];
    document.querySelectorAll(".selected, .rf").forEach(function (e) { e.classList.remove("selected", "rf"); });
    let target = null;
    document.querySelectorAll(".view").forEach(function (view) {
      const owner = data.units[view.dataset.view] || {};
      const mine = new Set(own.map(function (l) { return owner[l]; }));
      const onPath = new Set(Array.from(path).map(function (l) { return owner[l]; }));
      view.querySelectorAll("g[data-name]").forEach(function (g) {
        const n = g.dataset.name;
        const layersOf = g.dataset.layers ? g.dataset.layers.split(" ") : null;
        let hit, rf;
        if (layersOf) {  // a volume: the layers drawn in it
          hit = n === name || layersOf.indexOf(own[own.length - 1]) >= 0;
          rf = layersOf.some(function (l) { return path.has(l); });
        } else if (g.classList.contains("cluster")) {
          hit = n === name; rf = false;
        } else {
          hit = n === name || (!blocks[n] && mine.has(n)) || (blocks[n] && mine.has(n));
          rf = onPath.has(n);
        }
        if (hit) {
          g.classList.add("selected");
          if (view.classList.contains("shown") && !view.closest("[hidden]") && !g.closest(".fold-hidden") && !target) target = g;
        } else if (rf) g.classList.add("rf");
      });
    });
    document.querySelectorAll("#table tbody tr").forEach(function (tr) {
      const n = tr.dataset.name;
      if (own.indexOf(n) >= 0) tr.classList.add("selected");
      else if (path.has(n)) tr.classList.add("rf");
    });
    if (target && scroll !== false) target.scrollIntoView({ block: "center", inline: "center" });
  }
  document.addEventListener("click", function (e) {
    const g = e.target.closest ? e.target.closest("[data-name]") : null;
    if (g && (layers.has(g.dataset.name) || blocks[g.dataset.name])) { e.preventDefault(); select(g.dataset.name); }
  });
  document.addEventListener("keydown", function (e) {
    if (e.key !== "Enter" && e.key !== " ") return;
    const g = document.activeElement;
    if (g && g.dataset && g.dataset.name && g.tagName.toLowerCase() === "g") { e.preventDefault(); select(g.dataset.name); }
  });

  // a block folded or unfolded (fold.js): its box stands for its layers now, or they are back
  document.addEventListener("netdsl:folded", function () { if (selected) select(selected, false); });

  // ---- search ---------------------------------------------------------------------------------
  const list = document.getElementById("names");
  names.forEach(function (n) { const o = document.createElement("option"); o.value = n; list.appendChild(o); });
  document.getElementById("search").addEventListener("submit", function (e) {
    e.preventDefault();
    const q = document.getElementById("search-box").value.trim();
    if (!q) return;
    const low = q.toLowerCase();
    const found = names.find(function (n) { return n === q; }) ||
      names.find(function (n) { return n.toLowerCase() === low; }) ||
      names.find(function (n) { return n.toLowerCase().indexOf(low) >= 0; });
    if (found) select(found);
    else {
      document.getElementById("selected").textContent = "no layer or block named " + q;
      document.getElementById("explain").textContent = "Names start like: " + names.slice(0, 8).join(", ") + " ...";
    }
  });

  // ---- large text -----------------------------------------------------------------------------
  document.getElementById("large-text").addEventListener("change", function (e) {
    document.body.classList.toggle("large", e.target.checked);
  });

  // ---- the summary table, sortable by column --------------------------------------------------
  const rfText = function (l) { return l.rf.size[0] + "x" + l.rf.size[1]; };
  const columns = [
    ["layer", function (l) { return l.name; }, null, false],
    ["as written", function (l) { return l.written; }, null, false],
    ["output", function (l) { return shapeText(l.shape); }, function (l) { return l.shape.reduce(function (a, b) { return a * b; }, 1); }, false],
    ["params", function (l) { return fmt(l.params); }, function (l) { return l.params; }, true],
    ["MACs", function (l) { return fmt(l.macs); }, function (l) { return l.macs; }, true],
    ["activations", function (l) { return fmt(l.activations); }, function (l) { return l.activations; }, true],
    ["RF", rfText, function (l) { return l.rf.size[0] * l.rf.size[1]; }, false],
  ];
  const thead = document.querySelector("#table thead");
  const tbody = document.querySelector("#table tbody");
  const head = document.createElement("tr");
  columns.forEach(function (c, i) {
    const th = document.createElement("th");
    th.scope = "col";
    if (c[3]) th.className = "num";
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = c[0];
    b.addEventListener("click", function () { sortBy(i, th); });
    th.appendChild(b);
    head.appendChild(th);
  });
  thead.appendChild(head);
  let rows = data.layers.slice();
  function fill() {
    tbody.textContent = "";
    rows.forEach(function (l) {
      const tr = document.createElement("tr");
      tr.dataset.name = l.name;
      columns.forEach(function (c, i) {
        const td = document.createElement("td");
        if (c[3]) td.className = "num";
        if (i === 0) {
          const b = document.createElement("button");
          b.type = "button"; b.className = "name"; b.textContent = l.name;
          b.addEventListener("click", function () { select(l.name); });
          td.appendChild(b);
        } else td.textContent = c[1](l);
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
    if (selected) select(selected, false);
  }
  let sortState = [-1, 1];
  function sortBy(i, th) {
    const dir = sortState[0] === i ? -sortState[1] : 1;
    sortState = [i, dir];
    const key = columns[i][2] || columns[i][1];
    const order = new Map(data.layers.map(function (l, k) { return [l.name, k]; }));
    rows.sort(function (a, b) {
      const x = key(a), y = key(b);
      const c = x < y ? -1 : x > y ? 1 : order.get(a.name) - order.get(b.name);
      return c * dir;
    });
    thead.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
    fill();
  }
  fill();
  const t = data.totals;
  const totals = document.getElementById("totals");
  function para(text, cls) { const p = document.createElement("p"); p.textContent = text; if (cls) p.className = cls; totals.appendChild(p); }
  para("total params " + fmt(t.params) + " (weights " + fmt(t.weights) + " + biases " + fmt(t.biases) + ")" +
       (t.params_without_side_outputs !== t.params ? "; without side outputs " + fmt(t.params_without_side_outputs) : ""));
  para("total MACs " + fmt(t.macs) + " (" + (t.flops / 1e9).toFixed(2) + " GFLOPs per image)" +
       (t.macs_without_side_outputs !== t.macs ? "; without side outputs " + fmt(t.macs_without_side_outputs) : ""));
  para("activations " + fmt(t.activations) + " values per image");
  para("outputs " + data.outputs.map(function (o) { return o.name + " = " + o.node + " (" + shapeText(o.shape) + ")"; }).join(", "));
  data.conventions.forEach(function (c) { para(c, "conventions"); });
}());
