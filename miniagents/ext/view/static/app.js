// The page of `miniagents view`: the agent call tree of a run (cytoscape), the selected call's messages and the
// selected message's text as it streams (server-sent events).
"use strict";

const COLORS = { running: "#f59e0b", finished: "#10b981", failed: "#ef4444", cancelled: "#9ca3af" };
const state = { run: null, runEvents: null, messageEvents: null, selectedCall: null, selectedMessage: null,
                calls: new Map(), counts: {}, pending: [], applyTimer: null, layoutTimer: null, layoutMs: 0, pinnedRun: null };

const cy = cytoscape({
  container: document.getElementById("graph"),
  style: [
    { selector: "node", style: { "label": "data(label)", "background-color": "data(color)", "font-size": 11,
                                 "text-valign": "bottom", "text-margin-y": 3, "width": 22, "height": 22,
                                 "min-zoomed-font-size": 7 } },
    { selector: "node:selected", style: { "border-width": 3, "border-color": "#2563eb" } },
    { selector: "edge", style: { "width": 1.5, "line-color": "#9ca3af", "target-arrow-color": "#9ca3af",
                                 "target-arrow-shape": "triangle", "curve-style": "bezier" } },
  ],
  wheelSensitivity: 0.3,
  pixelRatio: 1,  // (big graphs: fewer pixels to draw)
  hideEdgesOnViewport: true,
  textureOnViewport: true,
});
window.miniagentsView = { cy, state };  // for tests and the console

function scheduleLayout() {
  if (state.layoutTimer !== null) return;
  // A big graph takes a while to lay out: wait at least ten times as long as the last layout took.
  state.layoutTimer = setTimeout(() => {
    state.layoutTimer = null;
    const started = performance.now();
    cy.layout({ name: "breadthfirst", directed: true, roots: cy.nodes().roots(), spacingFactor: 1.1,
                animate: false, fit: true, padding: 20 }).run();
    state.layoutMs = performance.now() - started;
  }, Math.max(150, 10 * state.layoutMs));
}

// Events are applied at most every 200 ms, in one batch: one redraw of the graph however fast calls come.
function queueEvents(events) {
  state.pending.push(...events);
  if (state.applyTimer === null) {
    state.applyTimer = setTimeout(() => {
      state.applyTimer = null;
      const pending = state.pending;
      state.pending = [];
      applyEvents(pending);
    }, state.pending.length > 50 ? 200 : 20);
  }
}

function applyEvents(events) {
  const list = document.createDocumentFragment();
  cy.batch(() => {
    for (const event of events) {
      if (event.type === "call") addCall(event, list);
      else if (event.type === "status") setStatus(event.id, event.status, event.error);
    }
  });
  document.getElementById("calls").append(list);
  updateSummary();
  if (state.selectedCall && events.some((e) => e.type === "status" && e.id === state.selectedCall))
    selectCall(state.selectedCall, true);
}

function addCall(call, list) {
  state.calls.set(call.id, call);
  state.counts[call.status] = (state.counts[call.status] || 0) + 1;
  cy.add({ group: "nodes", data: { id: call.id, label: call.alias, color: COLORS[call.status] } });
  if (call.parent && cy.getElementById(call.parent).nonempty()) {
    cy.add({ group: "edges", data: { id: "e" + call.id, source: call.parent, target: call.id } });
  }
  const item = document.createElement("li");
  item.id = "call-" + call.id;
  item.dataset.callId = call.id;
  item.dataset.status = call.status;
  const dot = document.createElement("span");
  dot.className = "status " + call.status;
  item.append(dot, call.alias);
  const parent = state.calls.get(call.parent);
  call.depth = parent ? parent.depth + 1 : 0;
  item.style.paddingLeft = (4 + Math.min(call.depth, 40) * 12) + "px";
  item.onclick = () => selectCall(call.id);
  call.item = item;
  list.append(item);
  scheduleLayout();
}

function setStatus(id, status, error) {
  const call = state.calls.get(id);
  if (!call) return;
  state.counts[call.status] -= 1;
  state.counts[status] = (state.counts[status] || 0) + 1;
  call.status = status;
  if (error !== undefined) call.error = error;
  cy.getElementById(id).data("color", COLORS[status]);
  call.item.dataset.status = status;
  call.item.firstChild.className = "status " + status;
}

function runLabel(name, calls, running) {
  return name + " (" + calls + " calls" + (running ? ", " + running + " running" : "") + ")";
}

function updateSummary() {
  document.getElementById("summary").textContent = state.calls.size + " calls: " +
    Object.entries(state.counts).filter(([, v]) => v > 0).map(([k, v]) => v + " " + k).join(", ");
  const option = document.getElementById("runs").selectedOptions[0];
  if (option && option.value === state.run && option.dataset.name)  // (the list itself refreshes every second)
    option.textContent = runLabel(option.dataset.name, state.calls.size, state.counts.running || 0);
}

function resetRun() {
  if (state.runEvents) state.runEvents.close();
  if (state.messageEvents) state.messageEvents.close();
  state.runEvents = state.messageEvents = null;
  state.calls.clear();
  state.counts = {};
  state.pending = [];
  if (state.applyTimer !== null) clearTimeout(state.applyTimer);
  state.applyTimer = null;
  state.selectedCall = state.selectedMessage = null;
  cy.elements().remove();
  document.getElementById("calls").innerHTML = "";
  document.getElementById("details").innerHTML = "<p>Click a call to see its messages.</p>";
  document.getElementById("messages").innerHTML = "";
  document.getElementById("message-meta").textContent = "";
  document.getElementById("message-text").textContent = "";
}

function openRun(runId) {
  if (state.run === runId) return;
  resetRun();
  state.run = runId;
  document.getElementById("runs").value = runId;
  const events = new EventSource("/api/runs/" + encodeURIComponent(runId) + "/events");
  state.runEvents = events;
  events.onmessage = (message) => queueEvents(JSON.parse(message.data));
}

async function selectCall(id, refresh) {
  state.selectedCall = id;
  for (const li of document.querySelectorAll("#calls li")) li.classList.toggle("selected", li.dataset.callId === id);
  if (!refresh) { cy.$(":selected").unselect(); cy.getElementById(id).select(); }
  const response = await fetch("/api/runs/" + encodeURIComponent(state.run) + "/calls/" + encodeURIComponent(id));
  if (!response.ok || state.selectedCall !== id) return;
  const call = await response.json();
  const details = document.getElementById("details");
  details.innerHTML = "";
  const title = document.createElement("h3");
  title.textContent = call.alias + " (" + call.status + ")";
  details.append(title);
  if (call.error) {
    const error = document.createElement("p");
    error.className = "error";
    error.textContent = call.error;
    details.append(error);
  }
  const box = document.getElementById("messages");
  box.innerHTML = "";
  for (const [label, list] of [["input", call.inputs], ["reply", call.replies]]) {
    for (const [i, m] of list.entries()) {
      const button = document.createElement("button");
      button.dataset.key = m.key;
      button.textContent = label + " " + i + " (" + m.class + "): " + m.preview;
      button.onclick = () => selectMessage(m.key);
      box.append(button);
    }
  }
  const keys = [...call.replies, ...call.inputs].map((m) => m.key);
  if (!refresh || !keys.includes(state.selectedMessage)) {
    if (keys.length) selectMessage(keys[0]); else clearMessage();
  } else markSelectedMessage();
}

function markSelectedMessage() {
  for (const b of document.querySelectorAll("#messages button"))
    b.classList.toggle("selected", b.dataset.key === state.selectedMessage);
}

function clearMessage() {
  if (state.messageEvents) state.messageEvents.close();
  state.messageEvents = null;
  state.selectedMessage = null;
  document.getElementById("message-meta").textContent = "";
  document.getElementById("message-text").textContent = "";
}

function selectMessage(key) {
  if (state.selectedMessage === key) { markSelectedMessage(); return; }
  clearMessage();
  state.selectedMessage = key;
  markSelectedMessage();
  const text = document.getElementById("message-text");
  const meta = document.getElementById("message-meta");
  meta.textContent = "streaming…";
  const url = "/api/runs/" + encodeURIComponent(state.run) + "/messages/" + encodeURIComponent(key) + "/stream";
  const events = new EventSource(url);
  state.messageEvents = events;
  events.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.text !== undefined) text.textContent += event.text;
    if (event.done) {
      meta.textContent = event.class + (event.error ? " — " + event.error : "");
      meta.className = event.error ? "error" : "";
      events.close();
      state.messageEvents = null;
      if (state.selectedCall) selectCall(state.selectedCall, true);  // (the message previews are final now)
    }
  };
}

cy.on("tap", "node", (event) => selectCall(event.target.id()));

async function refreshRuns() {
  const response = await fetch("/api/runs");
  if (!response.ok) return;
  const runs = await response.json();
  const select = document.getElementById("runs");
  const current = select.value;
  select.innerHTML = "";
  for (const run of runs) {
    const option = document.createElement("option");
    option.value = run.id;
    option.dataset.name = run.name;
    option.textContent = runLabel(run.name, run.calls, run.running);
    select.append(option);
  }
  if (current) select.value = current;
  const wanted = state.pinnedRun || (runs.length ? runs[0].id : null);  // follow the newest run unless pinned
  if (wanted && wanted !== state.run) openRun(wanted);
}

document.getElementById("runs").onchange = (event) => { state.pinnedRun = event.target.value; openRun(state.pinnedRun); };
const requested = new URLSearchParams(location.search).get("run");
if (requested) state.pinnedRun = requested;
refreshRuns();
setInterval(refreshRuns, 1000);
