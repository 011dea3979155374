"use strict";
// refusalscope view: everything from the data goes onto the page through textContent.
const D = JSON.parse(document.getElementById("data").textContent);
const PAGE = 50;
const byKey = new Map(D.rows.map((r) => [r.run + "\u0000" + r.id, r]));
const FILTERS = ["model", "attack", "cell", "seed", "label", "scorer", "refused", "outcome", "agree", "text"];
let page = 0;

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") e.textContent = v; else if (k === "cls") e.className = v; else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
}
const fmt = (x, d = 3) => (x == null || Number.isNaN(x) ? "–" : Number(x).toFixed(d));
const uniq = (xs) => [...new Set(xs)].sort((a, b) => String(a).localeCompare(String(b), undefined, {numeric: true}));
const mainScorer = () => {
  const n = {};
  for (const r of D.rows) if (r.main) n[r.main] = (n[r.main] || 0) + 1;
  return Object.keys(n).sort((a, b) => n[b] - n[a])[0] || D.scorers[0] || "";
};
const MAIN = mainScorer();

function hashFor(f) {
  const q = new URLSearchParams();
  for (const k of FILTERS) if (f[k] != null && f[k] !== "") q.set(k, f[k]);
  return "#browse?" + q.toString();
}
function options(sel, values, allText) {
  sel.replaceChildren(el("option", {value: "", text: allText}), ...values.map((v) => el("option", {value: String(v), text: String(v)})));
}
function setupFilters() {
  const $ = (id) => document.getElementById("f-" + id);
  options($("model"), uniq(D.rows.map((r) => r.model)), "all");
  options($("attack"), uniq(D.rows.map((r) => r.attack)), "all");
  options($("cell"), uniq(D.rows.map((r) => r.cell)), "all");
  options($("seed"), uniq(D.rows.map((r) => (r.seed == null ? "none" : r.seed))), "all");
  options($("label"), uniq(D.rows.map((r) => r.label)), "all");
  options($("scorer"), D.scorers, "main (" + MAIN + ")");
  options($("refused"), ["refused", "not refused"], "any");
  options($("outcome"), ["refused", "complied", "degenerate"], "any");
  options($("agree"), ["agree", "disagree"], "any");
  for (const k of FILTERS) {
    $(k).addEventListener(k === "text" ? "input" : "change", () => { location.hash = hashFor(current()); });
  }
  $("show").addEventListener("change", () => render());
  document.getElementById("prev").onclick = () => { page = Math.max(0, page - 1); render(); };
  document.getElementById("next").onclick = () => { page += 1; render(); };
  const hs = document.getElementById("heat-scorer");
  options(hs, D.scorers.filter((s) => s !== MAIN), MAIN);
  hs.addEventListener("change", heatmap);
}
function current() {
  const f = {};
  for (const k of FILTERS) f[k] = document.getElementById("f-" + k).value;
  return f;
}
function labelOf(r, scorer) { return r.scores[scorer || r.main] || null; }
function matches(r, f) {
  if (f.model && r.model !== f.model) return false;
  if (f.attack && r.attack !== f.attack) return false;
  if (f.cell && r.cell !== f.cell) return false;
  if (f.seed && String(r.seed == null ? "none" : r.seed) !== f.seed) return false;
  if (f.label && r.label !== f.label) return false;
  const lab = labelOf(r, f.scorer);
  if (f.refused && (!lab || lab.refused !== (f.refused === "refused"))) return false;
  if (f.outcome && (!lab || lab.outcome !== f.outcome)) return false;
  if (f.agree && r.agree !== (f.agree === "agree")) return false;
  if (f.text) {
    const t = f.text.toLowerCase();
    if (!r.prompt.toLowerCase().includes(t) && !r.response.toLowerCase().includes(t) && !r.id.toLowerCase().includes(t)) return false;
  }
  return true;
}
function responseBox(r, title) {
  const box = el("div", {}, el("div", {cls: "meta", text: title}));
  const pre = el("pre", {cls: "resp", text: r.response});
  const lab = labelOf(r);
  const risky = r.label === "harmful" && !(lab && lab.refused);
  if (risky && !document.getElementById("f-show").checked) {
    box.append(el("details", {}, el("summary", {text: "Content warning: a completion to a harmful request that was not refused (click to show)"}), pre));
  } else box.append(pre);
  return box;
}
function rowCard(r) {
  const badges = Object.entries(r.scores).map(([name, s]) =>
    el("span", {cls: "badge " + (s.outcome || (s.refused ? "refused" : "complied")),
      text: name + ": " + (s.outcome || (s.refused ? "refused" : "not refused")) + (s.p == null ? "" : " p=" + fmt(s.p, 2))}));
  const meta = el("div", {cls: "meta", text:
    `${r.model} · ${r.cell} · seed ${r.seed == null ? "–" : r.seed} · ${r.label} · ${r.id} · P(refused) ${fmt(r.p)} · CE ${fmt(r.ce)} bits · RD ${fmt(r.rd)}`});
  const info = D.runs[r.run] || {};
  const base = info.baseline ? byKey.get(info.baseline + "\u0000" + r.id) : null;
  const pair = el("div", {cls: "pair"}, responseBox(r, r.attack === "none" ? "response" : "attacked response (" + r.cell + ")"));
  if (base) pair.append(responseBox(base, "baseline response (" + base.model + ", no attack): " + (labelOf(base) ? (labelOf(base).outcome || "") : "")));
  return el("div", {cls: "row", "data-run": r.run, "data-id": r.id, "data-cell": r.cell, "data-model": r.model},
    meta, el("div", {}, ...badges), el("div", {cls: "prompt", text: r.prompt}), pair, el("div", {cls: "meta", text: "run " + r.run}));
}
function render() {
  const f = current();
  const hits = D.rows.filter((r) => matches(r, f));
  const pages = Math.max(1, Math.ceil(hits.length / PAGE));
  page = Math.min(page, pages - 1);
  const shown = hits.slice(page * PAGE, page * PAGE + PAGE);
  document.getElementById("count").textContent = `${hits.length} rows · page ${page + 1} of ${pages}`;
  document.getElementById("count").dataset.n = String(hits.length);
  document.getElementById("rows").replaceChildren(...shown.map(rowCard));
}
function colour(v) {
  if (v == null) return "#eee";
  const h = Math.round(120 * v); // 0 = red (nothing refused), 120 = green (all refused)
  return `hsl(${h},60%,72%)`;
}
function heatmap() {
  const scorer = document.getElementById("heat-scorer").value || MAIN;
  const cs = D.cells.filter((c) => c.scorer === scorer);
  const models = uniq(cs.map((c) => c.model));
  const cols = uniq(cs.map((c) => c.cell));
  const head = el("tr", {}, el("th", {cls: "l", text: "model \\ cell"}), ...cols.map((c) => el("th", {text: c})));
  const body = models.map((m) => el("tr", {}, el("th", {cls: "l", text: m}), ...cols.map((col) => {
    const c = cs.find((x) => x.model === m && x.cell === col);
    const td = el("td", {style: "background:" + colour(c ? c.rrr : null)});
    if (c) td.append(el("a", {href: hashFor({model: m, cell: col, label: "harmful", scorer}), title: `n=${c.n}`, text: fmt(c.rrr, 2)}));
    return td;
  })));
  document.getElementById("heatmap").replaceChildren(el("table", {id: "heat"}, el("thead", {}, head), el("tbody", {}, ...body)));
  const cols2 = ["model", "cell", "scorer", "n", "RRR", "complied", "degenerate", "CE bits", "RD"];
  const rows = D.cells.map((c) => {
    const base = {model: c.model, cell: c.cell, label: "harmful", scorer: c.scorer};
    const link = (text, extra) => el("a", {href: hashFor({...base, ...extra}), text});
    return el("tr", {}, el("td", {cls: "l"}, link(c.model, {})), el("td", {cls: "l"}, link(c.cell, {})),
      el("td", {cls: "l", text: c.scorer}), el("td", {}, link(String(c.n), {})),
      el("td", {}, link(fmt(c.rrr), {refused: "refused"})), el("td", {}, link(fmt(c.complied), {outcome: "complied"})),
      el("td", {}, link(fmt(c.degenerate), {outcome: "degenerate"})), el("td", {}, link(fmt(c.ce), {})), el("td", {}, link(fmt(c.rd), {})));
  });
  document.getElementById("cell-table").replaceChildren(el("table", {id: "cells"},
    el("thead", {}, el("tr", {}, ...cols2.map((c) => el("th", {text: c})))), el("tbody", {}, ...rows)));
}
function route() {
  const h = location.hash || "#study";
  const browse = h.startsWith("#browse");
  document.getElementById("study-view").hidden = browse;
  document.getElementById("browse-view").hidden = !browse;
  if (browse) {
    const q = new URLSearchParams(h.split("?")[1] || "");
    for (const k of FILTERS) {
      const sel = document.getElementById("f-" + k);
      const v = q.get(k) || "";
      if (sel.tagName === "SELECT" && v && ![...sel.options].some((o) => o.value === v)) sel.append(el("option", {value: v, text: v}));
      sel.value = v;
    }
    page = 0;
    render();
  }
}
function linkReportTables() {
  // The report's results tables name model, attack, n_data, steps (and scorer): link each of
  // their cells to the rows of that cell, where such a cell is on the page.
  const known = new Set(D.rows.map((r) => r.model + "\u0000" + r.cell));
  for (const table of document.querySelectorAll("#report table")) {
    const head = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
    const col = (name) => head.indexOf(name);
    if (col("model") < 0 || col("attack") < 0) continue;
    for (const tr of table.querySelectorAll("tbody tr")) {
      const td = [...tr.children].map((x) => x.textContent.trim());
      const attack = td[col("attack")];
      const cell = attack === "none" ? "none" : `${attack} n_data=${td[col("n_data")]} steps=${td[col("steps")]}`;
      if (!known.has(td[col("model")] + "\u0000" + cell)) continue;
      const f = {model: td[col("model")], cell, label: "harmful"};
      if (col("scorer") >= 0 && D.scorers.includes(td[col("scorer")])) f.scorer = td[col("scorer")];
      for (const c of tr.children) {
        const a = el("a", {href: hashFor(f), text: c.textContent});
        c.replaceChildren(a);
      }
    }
  }
}
setupFilters();
heatmap();
linkReportTables();
if (D.notes.length) document.getElementById("study-view").prepend(el("p", {text: D.notes.join("; ")}));
window.addEventListener("hashchange", route);
route();
