"use strict";
// Builds the report from the JSON in #report-data. Only the totals, the
// matrix and the first page of failures are built at load; every other part
// is built when it is opened, a page of items at a time, so the page stays
// quick with 100,000 items. Text goes in through textContent only.
(() => {
  const t0 = performance.now();
  const D = JSON.parse(document.getElementById("report-data").textContent);
  const tParsed = performance.now();
  const F = 6; // integers per item: column, vector, outcome, detail, known failure, ignored
  const COL = 0, VEC = 1, OUTC = 2, DETAIL = 3, KNOWN = 4, IGNORED = 5;
  const OUT = D.outcomes;
  const O = Object.fromEntries(OUT.map((o, i) => [o, i]));
  const FAILING = new Set([O.failed, O.error, O.crashed, O.timeout]);
  const items = D.items;
  const count = items.length / F;
  const PAGE = 50;
  const NONE = "(no flag)";

  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "text") e.textContent = v;
      else if (k === "class") e.className = v;
      else if (k === "onclick") e.addEventListener("click", v);
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }
  const num = (n, cls) => el("td", { class: "n" + (n ? "" : " zero") + (cls ? " " + cls : ""), text: String(n) });
  const field = (i, f) => items[i * F + f];
  const column = (c) => D.columns[c];
  const columnText = (c) => {
    const [backend, profile, machine, run] = column(c);
    return `${backend} ${profile} @ ${machine}` + (run === null ? "" : ` [run ${run + 1}]`);
  };

  // -- counting, once
  const nOut = OUT.length;
  const colCounts = new Int32Array(D.columns.length * nOut);
  const totals = new Int32Array(nOut);
  const failing = [];
  let ignoredItems = 0;
  for (let i = 0; i < count; i++) {
    const o = field(i, OUTC);
    colCounts[field(i, COL) * nOut + o]++;
    totals[o]++;
    if (FAILING.has(o)) failing.push(i);
    if (field(i, IGNORED)) ignoredItems++;
  }
  failing.sort((a, b) => field(a, COL) - field(b, COL) || a - b);

  // -- one item, its body built when opened
  function itemBody(i) {
    const [id, description, flags] = D.vectors[field(i, VEC)];
    const body = el("div", { class: "body" });
    if (description) body.append(el("p", { text: description }));
    body.append(el("p", { class: "mono", text: `${id} · ${columnText(field(i, COL))}` }));
    if (flags.length) {
      body.append(el("p", { text: "flags: " + flags.map((f) => `${D.flags[f][0]} (${D.flags[f][1]})`).join(", ") }));
    }
    const known = D.texts[field(i, KNOWN)];
    if (known) body.append(el("p", { class: "known", text: "declared to fail: " + known }));
    const detail = D.texts[field(i, DETAIL)];
    if (detail) body.append(el("pre", { class: field(i, OUTC) === O.skipped ? "reason" : "diff", text: detail }));
    const ignored = D.texts[field(i, IGNORED)];
    if (ignored) body.append(el("p", { text: "not observable there:" }), el("pre", { class: "ignored", text: ignored }));
    return body;
  }
  function itemView(i) {
    const o = OUT[field(i, OUTC)];
    const d = el(
      "details",
      { class: "item", "data-item": String(i), "data-outcome": o },
      el("summary", {}, el("span", { class: "o-" + o, text: o }), ` ${D.vectors[field(i, VEC)][0]} · ${columnText(field(i, COL))}`),
    );
    d.addEventListener("toggle", () => {
      if (d.open && d.children.length === 1) d.append(itemBody(i));
    });
    return d;
  }

  // -- a list shown a page at a time
  function paged(container, list, render) {
    let page = 0;
    const pages = Math.max(1, Math.ceil(list.length / PAGE));
    const out = el("div", { class: "paged", "data-total": String(list.length) });
    const draw = () => {
      out.replaceChildren();
      const from = page * PAGE, to = Math.min(list.length, from + PAGE);
      const pager = el(
        "div",
        { class: "pager" },
        el("button", { class: "prev", onclick: () => { page--; draw(); } }, "previous"),
        el("button", { class: "next", onclick: () => { page++; draw(); } }, "next"),
        list.length ? `${from + 1}–${to} of ${list.length}` : "none",
      );
      pager.children[0].disabled = page === 0;
      pager.children[1].disabled = page >= pages - 1;
      out.append(pager);
      for (let k = from; k < to; k++) out.append(render(list[k]));
    };
    draw();
    container.replaceChildren(out);
  }

  // -- header, totals, runs, matrix: built at load
  function header() {
    const hosts = new Set(D.runs.map((r) => r.host || r.source)).size;
    const s = document.getElementById("summary");
    s.textContent = `${count} items from ${D.runs.length} run(s) on ${hosts} host(s), ${D.columns.length} backend × profile × machine columns; generated ${D.generated}.`;
    if (D.runs.some((r) => r.legacy)) s.append(el("span", { class: "legacy", text: " Includes legacy results files: items only, no run details." }));
  }
  function totalsView() {
    const cards = document.querySelector("#totals .cards");
    for (let o = 0; o < nOut; o++) {
      cards.append(el("div", { class: "card", "data-outcome": OUT[o] }, el("b", { class: "o-" + OUT[o], text: String(totals[o]) }), OUT[o]));
    }
    cards.append(el("div", { class: "card", "data-outcome": "total" }, el("b", { text: String(count) }), "total"));
    cards.append(el("div", { class: "card", "data-outcome": "ignored" }, el("b", { text: String(ignoredItems) }), "with ignored observables"));
  }
  function runsView() {
    const head = ["#", "file", "host", "kernel", "started", "finished", "framework", "suite", "backends", "exit", "command"];
    const table = el("table", {}, el("tr", {}, ...head.map((h) => el("th", { text: h }))));
    D.runs.forEach((r, n) => {
      const backends = r.backends.map(([name, version, unavailable]) => `${name} ${version}` + (unavailable ? ` (unavailable: ${unavailable})` : "")).join(", ");
      const row = el("tr", { "data-run": String(n) },
        el("td", { text: String(n + 1) }), el("td", { text: r.source }),
        r.legacy ? el("td", { class: "legacy", colspan: "9", text: "legacy results file: only its items are known" }) : null);
      if (!r.legacy) {
        for (const v of [r.host, r.kernel, r.started, r.finished, r.framework]) row.append(el("td", { text: v }));
        row.append(el("td", { class: "mono", title: `${r.suite} (${r.files} files)`, text: r.suite.replace("sha256:", "").slice(0, 12) }));
        row.append(el("td", { text: backends }), el("td", { text: r.exit === null ? "" : String(r.exit) }));
        row.append(el("td", { class: "mono", text: r.command }));
      }
      table.append(row);
    });
    document.querySelector("#runs .body").append(table);
  }
  function countCell(n, filter, outcomeName) {
    const td = num(n, "o-" + outcomeName);
    td.setAttribute("data-outcome", outcomeName);
    if (n) td.replaceChildren(el("button", { class: "count", onclick: () => browse(filter) }, String(n)));
    return td;
  }
  function matrixView() {
    const table = el("table", {}, el("tr", {}, ...["backend", "profile", "machine", ...OUT, "total"].map((h) => el("th", { text: h }))));
    D.columns.forEach(([backend, profile, machine, run], c) => {
      const row = el("tr", { class: "column", "data-backend": backend, "data-profile": profile, "data-machine": machine, "data-run": run === null ? "" : String(run + 1) },
        el("td", { text: backend }), el("td", { text: profile }),
        el("td", { class: "machine", text: machine + (run === null ? "" : ` [run ${run + 1}]`) }));
      let total = 0;
      for (let o = 0; o < nOut; o++) {
        const n = colCounts[c * nOut + o];
        total += n;
        row.append(countCell(n, { col: c, outcome: o }, OUT[o]));
      }
      row.append(countCell(total, { col: c }, "total"));
      table.append(row);
    });
    const all = el("tr", { class: "all" }, el("td", { colspan: "3", text: "all" }));
    for (let o = 0; o < nOut; o++) all.append(countCell(totals[o], { outcome: o }, OUT[o]));
    all.append(countCell(count, {}, "total"));
    table.append(all);
    document.querySelector("#matrix .body").append(table);
  }
  function failuresView() {
    paged(document.querySelector("#failures .body"), failing, itemView);
  }

  // -- bug classes and flags: counted and built when opened
  function classesView() {
    const flagCounts = D.flags.map(() => new Int32Array(nOut));
    const classCounts = new Map();
    const bump = (name, o) => {
      if (!classCounts.has(name)) classCounts.set(name, new Int32Array(nOut));
      classCounts.get(name)[o]++;
    };
    for (let i = 0; i < count; i++) {
      const o = field(i, OUTC), flags = D.vectors[field(i, VEC)][2];
      if (!flags.length) bump(NONE, o);
      const classes = new Set();
      for (const f of flags) { flagCounts[f][o]++; classes.add(D.flags[f][1]); }
      for (const cls of classes) bump(cls, o);
    }
    const head = el("tr", {}, ...["bug class / flag", ...OUT, "total"].map((h) => el("th", { text: h })));
    const table = el("table", {}, head);
    const countsRow = (row, counts, filter) => {
      let total = 0;
      for (let o = 0; o < nOut; o++) { total += counts[o]; row.append(countCell(counts[o], { ...filter, outcome: o }, OUT[o])); }
      row.append(countCell(total, filter, "total"));
      return row;
    };
    for (const cls of [...classCounts.keys()].sort()) {
      const flagsOf = D.flags.map((f, k) => k).filter((k) => D.flags[k][1] === cls);
      const row = el("tr", { class: "bug-class", "data-class": cls });
      const toggle = el("button", { class: "count", "aria-expanded": "false" }, "▸ " + cls);
      let shown = null;
      toggle.addEventListener("click", () => {
        if (shown) { shown.forEach((r) => r.remove()); shown = null; toggle.textContent = "▸ " + cls; return; }
        shown = flagsOf.map((k) => countsRow(el("tr", { class: "flag", "data-flag": D.flags[k][0] }, el("td", { text: "\u2003" + D.flags[k][0] })), flagCounts[k], { flag: k }));
        row.after(...shown);
        toggle.textContent = "▾ " + cls;
      });
      row.append(el("td", {}, cls === NONE ? NONE : toggle));
      table.append(countsRow(row, classCounts.get(cls), cls === NONE ? { cls: NONE } : { cls }));
    }
    document.querySelector("#classes .body").append(table);
  }

  // -- items grouped by a text (a skip's reason, a declared failure's reason), built when opened
  function groupsView(section, outcome, textField) {
    const groups = new Map();
    for (let i = 0; i < count; i++) {
      if (field(i, OUTC) !== outcome) continue;
      const key = field(i, textField);
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(i);
    }
    const body = document.querySelector(`#${section} .body`);
    if (!groups.size) { body.append(el("p", { text: "none" })); return; }
    for (const [key, list] of [...groups.entries()].sort((a, b) => b[1].length - a[1].length)) {
      const perColumn = new Map();
      for (const i of list) perColumn.set(field(i, COL), (perColumn.get(field(i, COL)) || 0) + 1);
      const where = () => el("table", { class: "per-column" },
        ...[...perColumn.entries()].map(([c, n]) => el("tr", { "data-column": columnText(c) }, el("td", { class: "machine", text: columnText(c) }), num(n))));
      const group = el("details", { class: "group", "data-count": String(list.length) },
        el("summary", {}, el("b", { class: "group-count", text: String(list.length) }), " ", el("span", { class: "group-reason", text: D.texts[key] || "(no reason given)" })));
      group.addEventListener("toggle", () => {
        if (!group.open || group.children.length > 1) return;
        const items = el("div");
        group.append(where(), items);
        paged(items, list, itemView);
      });
      body.append(group);
    }
  }
  function lazily(section, build) {
    const d = document.querySelector(`#${section} details`);
    d.addEventListener("toggle", () => { if (d.open && !d.dataset.built) { d.dataset.built = "1"; build(); } });
  }

  // -- every item, filtered
  const filters = {};
  function select(name, options) {
    const s = el("select", { name }, el("option", { value: "", text: `any ${name}` }));
    for (const [value, text] of options) s.append(el("option", { value: String(value), text }));
    s.addEventListener("change", () => browse(current()));
    filters[name] = s;
    return s;
  }
  function filtersView() {
    const box = document.querySelector("#items .filters");
    box.append(
      select("column", D.columns.map((_, c) => [c, columnText(c)])),
      select("outcome", OUT.map((o, k) => [k, o])),
      select("class", [...new Set(D.flags.map((f) => f[1])), NONE].sort().map((c) => [c, c])),
      select("flag", D.flags.map((f, k) => [k, f[0]]).sort((a, b) => (a[1] < b[1] ? -1 : 1))),
    );
    const text = el("input", { type: "search", name: "text", placeholder: "vector id or description contains…" });
    let timer = 0;
    text.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => browse(current()), 200); });
    filters.text = text;
    box.append(text);
  }
  function current() {
    const f = {};
    if (filters.column.value !== "") f.col = Number(filters.column.value);
    if (filters.outcome.value !== "") f.outcome = Number(filters.outcome.value);
    if (filters.class.value !== "") f.cls = filters.class.value;
    if (filters.flag.value !== "") f.flag = Number(filters.flag.value);
    if (filters.text.value) f.text = filters.text.value;
    return f;
  }
  function matches(f) {
    const text = f.text === undefined ? undefined : f.text.toLowerCase();
    const vecOk = D.vectors.map(([id, description, flags]) =>
      (f.flag === undefined || flags.includes(f.flag)) &&
      (f.cls === undefined || (f.cls === NONE ? !flags.length : flags.some((k) => D.flags[k][1] === f.cls))) &&
      (text === undefined || id.toLowerCase().includes(text) || description.toLowerCase().includes(text)));
    const out = [];
    for (let i = 0; i < count; i++) {
      if ((f.col === undefined || field(i, COL) === f.col) && (f.outcome === undefined || field(i, OUTC) === f.outcome) && vecOk[field(i, VEC)]) out.push(i);
    }
    return out;
  }
  function browse(f, scroll = true) {
    filters.column.value = f.col === undefined ? "" : String(f.col);
    filters.outcome.value = f.outcome === undefined ? "" : String(f.outcome);
    filters.class.value = f.cls === undefined ? "" : f.cls;
    filters.flag.value = f.flag === undefined ? "" : String(f.flag);
    filters.text.value = f.text === undefined ? "" : f.text;
    paged(document.querySelector("#items .body"), matches(f), itemView);
    if (scroll) document.getElementById("items").scrollIntoView();
  }

  header();
  totalsView();
  matrixView();
  runsView();
  failuresView();
  filtersView();
  document.querySelector("#items .body").append(el("p", { class: "hint", text: "Choose a filter, or a count above." }));
  lazily("classes", classesView);
  lazily("xfails", () => groupsView("xfails", O.xfailed, KNOWN));
  lazily("skips", () => groupsView("skips", O.skipped, DETAIL));
  const tDone = performance.now();
  window.reportTiming = { parseMs: tParsed - t0, buildMs: tDone - tParsed, readyAt: tDone };
  document.documentElement.dataset.ready = "1";
})();
