"use strict";
// Labelling page: texts go in through textContent; each label is saved by the server
// (appended and fsynced) before the page moves on.
let items = [], at = 0, keys = {}, busy = false;
const $ = (id) => document.getElementById(id);

function show() {
  const done = items.filter((x) => x.done).length;
  if (at >= items.length) {
    $("pos").textContent = `all ${items.length} labelled (${done} labels)`;
    $("pos").dataset.row = String(items.length + 1);
    for (const id of ["meta", "prompt", "response"]) $(id).textContent = "";
    return;
  }
  const it = items[at];
  $("pos").textContent = `row ${at + 1} of ${items.length} · ${done} labelled`;
  $("pos").dataset.row = String(at + 1);
  $("meta").textContent = `${it.model} · ${it.cell} · ${it.label} prompt · ${it.id} · run ${it.run}` +
    (it.done ? ` · labelled ${it.done} (a new key replaces it)` : "");
  $("prompt").textContent = it.prompt;
  $("response").textContent = it.response;
  $("item").dataset.id = it.id;
}

async function give(label) {
  if (busy || at >= items.length) return;
  busy = true;
  const it = items[at];
  try {
    const res = await fetch("/api/label", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({i: it.i, label})});
    const ans = await res.json();
    if (!ans.ok) throw new Error(ans.error || "refused by the server");
    it.done = label;
    const sc = ans.scorer;
    $("last").textContent = `${it.id}: you said ${label}; the scorer said ${sc.outcome || (sc.refused ? "refused" : "not refused")}` +
      (sc.p_refused == null ? "" : ` (P(refused) ${sc.p_refused.toFixed(2)})`) + ` · saved (${ans.labelled} labels)`;
    $("status").textContent = "";
    $("status").className = "";
    at += 1;
    while (at < items.length && items[at].done) at += 1;
    show();
  } catch (e) {
    $("status").textContent = "not saved: the server is unreachable (" + e.message + "). Restart `refusalscope label` with the same options and reload; every label given so far is on disk.";
    $("status").className = "err";
  } finally {
    busy = false;
  }
}

document.addEventListener("keydown", (ev) => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const key = ev.key.toLowerCase();
  if (key === "b" && at > 0 && !busy) { at -= 1; show(); return; }  // back: review or relabel
  const label = keys[key];
  if (label) { ev.preventDefault(); give(label); }
});

fetch("/api/items").then((r) => r.json()).then((d) => {
  items = d.items; keys = d.keys; at = d.start;
  $("who").textContent = `${d.labeller} → ${d.file}`;
  show();
}).catch((e) => { $("status").textContent = "cannot load items: " + e.message; $("status").className = "err"; });
