// llmos dashboard: draws each snapshot the server sends on /events (server-sent events).
"use strict";

const token = new URLSearchParams(window.location.search).get("token");
const suffix = token ? "?token=" + encodeURIComponent(token) : "";
const lastTokens = {};  // model actor -> [time, tokens generated], for tokens/s now
const lastRestarts = {};  // actor -> restarts, to highlight a change

function el(tag, attrs, children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children || []) node.appendChild(child);
  return node;
}

function cell(text, cls, field) {
  const attrs = { text: String(text) };
  if (cls) attrs.class = cls;
  if (field) attrs["data-field"] = field;
  return el("td", attrs);
}

function fill(tableId, rows) {
  const body = document.querySelector("#" + tableId + " tbody");
  body.replaceChildren(...rows);
  if (!rows.length) {
    const span = document.querySelectorAll("#" + tableId + " thead th").length;
    body.appendChild(el("tr", {}, [el("td", { class: "empty", colspan: span, text: "none" })]));
  }
}

function drawTree(actors) {
  fill("tree", actors.map((a) => {
    const indent = "\u00a0\u00a0".repeat(a.depth) + (a.depth ? "\u2514 " : "");
    const restarted = a.name in lastRestarts && lastRestarts[a.name] !== a.restarts;
    lastRestarts[a.name] = a.restarts;
    return el("tr", { class: "kind-" + a.kind, "data-actor": a.name, "data-parent": a.parent }, [
      cell(indent + a.name, "name", "name"),
      cell(a.class, "", "class"),
      cell(a.state, "state-" + a.state, "state"),
      cell(a.mailbox, "num", "mailbox"),
      cell(a.processed, "num", "processed"),
      cell(a.failed, "num", "failed"),
      cell(a.restarts, "num" + (restarted ? " changed" : ""), "restarts"),
      cell(a.load, "num", "load"),
    ]);
  }));
}

function drawModels(models, at) {
  fill("models", models.map((m) => {
    const before = lastTokens[m.actor];
    let now = "-";
    if (before && at > before[0]) now = ((m.tokens_generated - before[1]) / (at - before[0])).toFixed(1);
    lastTokens[m.actor] = [at, m.tokens_generated];
    const sizes = Object.entries(m.batch_sizes || {}).map(([s, c]) => s + "\u00d7" + c).join(" ");
    const wait = m.completed ? (1000 * (m.queue_seconds || 0)) / m.completed : 0;
    return el("tr", { "data-model": m.actor }, [
      cell(m.actor), cell(m.model), cell(m.queued, "num", "queued"),
      cell(m.requests, "num", "requests"), cell(m.batches, "num", "batches"),
      cell(m.mean_batch_size.toFixed(2), "num", "mean_batch"), cell(sizes || "-", "", "batch_sizes"),
      cell(m.tokens_generated, "num", "tokens"), cell(now, "num", "tokens_per_second_now"),
      cell(m.tokens_per_second.toFixed(1), "num", "tokens_per_second"),
      cell(wait.toFixed(0) + " ms", "num", "queue"),
    ]);
  }));
}

function drawPools(pools) {
  fill("pools", pools.map((p) => el("tr", { "data-pool": p.name }, [
    cell(p.name), cell(p.router), cell(p.size + " (" + p.min_size + "-" + p.max_size + ")", "num"),
    cell(p.mailbox, "num"), cell(p.processed, "num"), cell(p.restarts, "num"),
    cell(p.utilisation === null ? "-" : (100 * p.utilisation).toFixed(0) + "%", "num"),
  ])));
}

function drawTokens(ledger) {
  const agents = Object.entries((ledger && ledger.agents) || {}).sort();
  fill("tokens", agents.map(([name, u]) => el("tr", { "data-agent": name }, [
    cell(name), cell(u.requests, "num"), cell(u.input_tokens, "num", "input"),
    cell(u.output_tokens, "num", "output"), cell(u.budget === null ? "-" : u.budget, "num"),
  ])));
}

function drawPeers(t) {
  const box = document.getElementById("peers");
  if (!t) { box.textContent = "no transport node"; return; }
  const up = t.peers_up.length ? t.peers_up.join(", ") : "none";
  const down = t.peers_down.length ? t.peers_down.join(", ") : "none";
  box.replaceChildren(
    el("div", { text: "up: " + up }),
    el("div", { text: "down: " + down }),
    el("div", { text: "frames in " + t.frames_in + " / out " + t.frames_out + ", bytes in " +
      (t.bytes_in || 0) + " / out " + (t.bytes_out || 0) + ", bad frames " + t.bad_frames +
      ", refusals " + t.refusals + ", pending " + t.pending_requests }),
  );
}

function drawChats(chats) {
  const box = document.getElementById("chats");
  if (!chats.length) { box.replaceChildren(el("div", { class: "empty", text: "no dialogue running" })); return; }
  box.replaceChildren(...chats.map((c) => {
    const state = c.running ? "running" : "ended (" + c.stopped_by + ")";
    const turns = c.entries.map((e) => {
      const meta = "turn " + e.turn + (e.tokens ? ", " + e.tokens + " tokens" : "") +
        (e.seconds ? ", " + e.seconds.toFixed(2) + " s" : "") + (e.trace_id ? ", trace " + e.trace_id : "");
      const attrs = { class: "turn " + e.kind, "data-index": e.index, "data-turn": e.turn };
      if (e.trace_id) attrs["data-trace"] = e.trace_id;
      return el("div", attrs, [
        el("span", { class: "speaker", text: e.speaker || "note" }),
        el("span", { class: "text", text: e.text }),
        el("span", { class: "meta", text: meta }),
      ]);
    });
    return el("div", { class: "chat", "data-chat": c.name }, [
      el("h3", { text: c.name + ": " + (c.task || c.dialogue) + " \u2014 " + state + ", " + c.turns + " turns" }),
      ...turns,
    ]);
  }));
}

function draw(message) {
  document.getElementById("address").textContent = message.address;
  document.getElementById("error").textContent = message.error || "";
  const snap = message.snapshot;
  if (!snap) return;
  const k = snap.kernel;
  document.getElementById("summary").textContent = new Date(snap.at * 1000).toLocaleTimeString() +
    " \u2014 " + snap.actors.length + " actors, processed " + k.processed + ", restarts " +
    k.restarts + ", dead letters " + k.dead_letters + ", ask failures " + k.ask_failures;
  drawTree(snap.actors);
  drawModels(snap.models, snap.at);
  drawPools(snap.pools);
  drawTokens(snap.tokens);
  drawPeers(snap.transport);
  drawChats(snap.chats);
  document.body.setAttribute("data-updated", String(snap.at));
}

const events = new EventSource("events" + suffix);
events.onmessage = (event) => draw(JSON.parse(event.data));
events.onerror = () => { document.getElementById("error").textContent = "reconnecting to the dashboard server…"; };
