// The page of `miniagents view`: the agent call tree of a run (cytoscape), the selected call's messages and the
// selected message's text as it streams (server-sent events).
//
// Runs of tens of thousands of calls keep the page responsive. Events are applied once per animation frame, at
// most EVENTS_PER_FRAME at a time, to the page's own model of the run (`state.calls`) and the list of calls. The
// graph follows the model in `layoutTree`, after a frame's events and at most every few times as long as the last
// one took: it draws at most MAX_NODES calls (a canvas redraws all of them on every change), the shallowest first
// and at most MAX_LEAVES childless children of one call, the others counted in a "+N more" node, and it places
// them itself in a time linear in the number of calls (cytoscape's "breadthfirst" layout took minutes).
"use strict";

const COLORS = { running: "#f59e0b", finished: "#10b981", failed: "#ef4444", cancelled: "#9ca3af" };
const MORE_COLOR_ORDER = ["failed", "running", "cancelled", "finished"];  // (a "+N more" node's colour: the first)
const COLUMN = 110;  // px between the centres of two neighbouring calls
const ROW = 70;  // px between a call and its children
const SHELF = 30;  // columns a tree spreads over before its subtrees wrap (unless it is bigger still)
const MAX_NODES = 2000;
const MAX_LEAVES = 200;
const EVENTS_PER_FRAME = 2500;
const FIT_PADDING = 20;  // px around the tree when it is fitted in view
const MAX_FIT_ZOOM = 1.5;  // (a tree of a few calls is not blown up to fill the view)

function newTop() {  // above the roots of the tree (not drawn)
  return { children: [], treeParent: null, shown: true, node: null, moreNode: null };
}

const state = { run: null, runEvents: null, messageEvents: null, selectedCall: null, selectedItem: null,
                selectedMessage: null, calls: new Map(), waiting: new Map(), top: newTop(), counts: {}, pending: [],
                applyFrame: null, layoutTimer: null, layoutDirty: false, layoutAt: 0, layoutMs: 0, extent: null,
                autoFit: true, pinnedRun: null };

const cy = cytoscape({
  container: document.getElementById("graph"),
  style: [
    { selector: "node", style: { "label": "data(label)", "background-color": "data(color)", "font-size": 11,
                                 "text-valign": "bottom", "text-margin-y": 3, "width": 22, "height": 22,
                                 "min-zoomed-font-size": 7 } },
    { selector: "node[more]", style: { "shape": "round-rectangle", "width": 44, "font-size": 22,
                                       "font-style": "italic" } },
    { selector: "node:selected", style: { "border-width": 3, "border-color": "#2563eb" } },
    { selector: "edge", style: { "width": 1.5, "line-color": "#9ca3af", "target-arrow-color": "#9ca3af",
                                 "target-arrow-shape": "triangle", "curve-style": "straight" } },
  ],
  pixelRatio: 1,  // (big graphs: fewer pixels to draw)
  hideEdgesOnViewport: true,
  textureOnViewport: true,
});
// Whether nothing waits to be applied or drawn (for tests and the console).
function idle() {
  return state.pending.length === 0 && state.applyFrame === null && state.layoutTimer === null && !state.layoutDirty;
}
window.miniagentsView = { cy, state, idle };

// --- events of the run ---------------------------------------------------------------------------------------------

function queueEvents(events) {
  for (const event of events) state.pending.push(event);
  if (state.applyFrame === null) state.applyFrame = requestAnimationFrame(applyPending);
}

function applyPending() {
  state.applyFrame = null;
  applyEvents(state.pending.splice(0, EVENTS_PER_FRAME));
  if (state.pending.length) state.applyFrame = requestAnimationFrame(applyPending);
}

function applyEvents(events) {
  const list = document.createDocumentFragment();
  let selectedChanged = false;
  cy.batch(() => {
    for (const event of events) {
      if (event.type === "call") addCall(event, list);
      else if (event.type === "status") {
        setStatus(event.id, event.status, event.error);
        selectedChanged ||= event.id === state.selectedCall;
      }
    }
  });
  document.getElementById("calls").append(list);
  updateSummary();
  scheduleLayout();
  if (selectedChanged) selectCall(state.selectedCall, true);
}

function addCall(event, list) {
  if (state.calls.has(event.id)) return;  // (a stream that reconnects starts over)
  const call = { id: event.id, parent: event.parent, alias: event.alias, status: event.status, error: event.error,
                 children: [], treeParent: null, depth: 0, item: null, shown: false, node: null, edge: null,
                 edgeFrom: null, moreNode: null, placedX: null, placedY: null };
  state.calls.set(call.id, call);
  state.counts[call.status] = (state.counts[call.status] || 0) + 1;
  const item = document.createElement("li");
  item.dataset.callId = call.id;
  item.dataset.status = call.status;
  const dot = document.createElement("span");
  dot.className = "status " + call.status;
  item.append(dot, call.alias);
  item.onclick = () => selectCall(call.id);
  call.item = item;
  list.append(item);
  const parent = call.parent == null ? undefined : state.calls.get(call.parent);
  if (parent !== undefined && parent !== call) attach(call, parent);
  else if (call.parent != null) {  // its parent's start has not come (yet): a root until it does
    if (!state.waiting.has(call.parent)) state.waiting.set(call.parent, []);
    state.waiting.get(call.parent).push(call);
  }
  indent(call);
  const children = state.waiting.get(call.id);
  if (children) {
    state.waiting.delete(call.id);
    for (const child of children) {
      if (isAncestor(child, call)) continue;  // (ids that make a cycle: the child stays a root)
      attach(child, call);
      indent(child);
    }
  }
  state.layoutDirty = true;
}

function attach(call, parent) {
  call.treeParent = parent;
  parent.children.push(call);
}

function isAncestor(call, of) {
  for (let up = of; up !== null; up = up.treeParent) if (up === call) return true;
  return false;
}

// The depth of a call (and of its subtree: a call can be attached after its children) indents the list.
function indent(call) {
  for (const stack = [call]; stack.length;) {
    const next = stack.pop();
    next.depth = next.treeParent === null ? 0 : next.treeParent.depth + 1;
    next.item.style.paddingLeft = (4 + Math.min(next.depth, 40) * 12) + "px";
    for (const child of next.children) stack.push(child);
  }
}

function setStatus(id, status, error) {
  const call = state.calls.get(id);
  if (!call) return;
  state.counts[call.status] -= 1;
  state.counts[status] = (state.counts[status] || 0) + 1;
  call.status = status;
  if (error !== undefined) call.error = error;
  if (call.node !== null) call.node.data("color", COLORS[status]);
  else state.layoutDirty = true;  // (counted in a "+N more" node, or not drawn yet)
  call.item.dataset.status = status;
  call.item.firstChild.className = "status " + status;
}

// --- the graph -------------------------------------------------------------------------------------------------------

function scheduleLayout() {
  if (!state.layoutDirty || state.layoutTimer !== null) return;
  // a big graph takes a while to lay out and draw: wait at least five times as long as the last layout took
  const wait = state.layoutAt + Math.max(100, 5 * state.layoutMs) - performance.now();
  if (wait <= 0) layoutTree();
  else state.layoutTimer = setTimeout(() => { state.layoutTimer = null; layoutTree(); }, wait);
}

function layoutTree() {
  state.layoutDirty = false;
  const started = performance.now();
  const top = state.top;
  top.children = [];
  for (const call of state.calls.values()) if (call.treeParent === null) top.children.push(call);
  const shown = chooseShown(top);
  for (let i = shown.length - 1; i >= 0; i -= 1) measure(shown[i]);
  place(top);
  draw(shown);
  state.extent = { width: top.width * COLUMN, height: (top.height - 1) * ROW };
  if (state.autoFit) fit();
  state.layoutAt = performance.now();
  state.layoutMs = state.layoutAt - started;
}

// The calls to draw, breadth first from the roots (parents before children): their `drawn` children, and the
// others in `more` (how many calls and of which statuses, with their subtrees; the first one is selected on a tap).
function chooseShown(top) {
  let budget = MAX_NODES;
  const shown = [top];
  for (let i = 0; i < shown.length; i += 1) {
    const call = shown[i];
    call.drawn = [];
    call.more = null;
    let leaves = 0;
    for (const child of call.children) {
      const leaf = child.children.length === 0;
      if (budget > 0 && !(leaf && leaves >= MAX_LEAVES)) {
        budget -= 1;
        if (leaf) leaves += 1;
        child.shown = true;
        call.drawn.push(child);
        shown.push(child);
        continue;
      }
      if (call.more === null) call.more = { count: 0, statuses: {}, first: child.id };
      for (const stack = [child]; stack.length;) {
        const hidden = stack.pop();
        hidden.shown = false;
        call.more.count += 1;
        call.more.statuses[hidden.status] = (call.more.statuses[hidden.status] || 0) + 1;
        for (const next of hidden.children) stack.push(next);
      }
    }
  }
  return shown;
}

function hasBelow(call) {
  return call.drawn.length > 0 || call.more !== null;
}

// The size of a drawn call's subtree in columns and rows (`width`, `height`), and where its children go. They sit
// side by side, in shelves no wider than SHELF columns or than a shelf of three times the subtree's area (a wide
// tree wraps); the childless ones (and the "+N more" node) first, together in a block of rows (a fan-out of hundreds
// of calls stays compact) from the call's left column. A child's `dx`, `dy`: its columns and rows from the call's
// left column and the row below it.
function measure(call) {
  let leaves = call.more === null ? 0 : 1;
  let area = 0;
  let widest = 0;
  for (const child of call.drawn) {
    if (hasBelow(child)) {
      area += child.width * child.height;
      widest = Math.max(widest, child.width);
    } else leaves += 1;
  }
  call.columns = Math.min(leaves, Math.max(12, Math.ceil(Math.sqrt(3 * leaves))));
  const blockRows = leaves ? Math.ceil(leaves / call.columns) : 0;
  area += call.columns * blockRows;
  const shelf = Math.max(SHELF, widest, call.columns, Math.ceil(Math.sqrt((3 * area * ROW) / COLUMN)));
  let width = call.columns;
  let shelfLeft = call.columns;
  let shelfTop = 0;
  let shelfRows = blockRows;
  for (const child of call.drawn) {
    if (!hasBelow(child)) continue;
    if (shelfLeft > 0 && shelfLeft + child.width > shelf) {  // (a new shelf below)
      shelfTop += shelfRows;
      shelfLeft = shelfRows = 0;
    }
    child.dx = shelfLeft;
    child.dy = shelfTop;
    shelfLeft += child.width;
    shelfRows = Math.max(shelfRows, child.height);
    width = Math.max(width, shelfLeft);
  }
  call.width = Math.max(width, 1);
  call.height = 1 + shelfTop + shelfRows;
}

// Every drawn call centred above its subtree (in columns and rows: `x`, `y`; the "+N more" node: `moreX`, `moreY`).
function place(top) {
  for (const stack = [[top, 0, -1]]; stack.length;) {
    const [call, left, row] = stack.pop();
    call.x = left + call.width / 2;
    call.y = row;
    let leaves = 0;
    for (const child of call.drawn) {
      if (hasBelow(child)) stack.push([child, left + child.dx, row + 1 + child.dy]);
      else {
        stack.push([child, left + (leaves % call.columns), row + 1 + Math.floor(leaves / call.columns)]);
        leaves += 1;
      }
    }
    if (call.more !== null) {
      call.moreX = left + (leaves % call.columns) + 0.5;
      call.moreY = row + 1 + Math.floor(leaves / call.columns);
    }
  }
}

// Bring cytoscape's graph in line with the drawn calls: add, move and remove nodes and edges (only what changed).
function draw(shown) {
  const gone = [];
  for (const call of [state.top, ...state.calls.values()]) {
    if (!call.shown && call.node !== null) {
      gone.push(call.node);  // (its edges go with it)
      call.node = call.edge = call.edgeFrom = call.placedX = call.placedY = null;
    }
    if ((!call.shown || call.more === null) && call.moreNode !== null) {
      gone.push(call.moreNode);
      call.moreNode = null;
    }
  }
  const added = [];
  cy.batch(() => {
    cy.collection(gone).remove();
    for (const call of shown) {
      if (call !== state.top) {
        const position = { x: call.x * COLUMN, y: call.y * ROW };
        if (call.node === null) {
          added.push({ group: "nodes", position,
                       data: { id: "c" + call.id, call: call.id, label: call.alias, color: COLORS[call.status] } });
        } else if (call.placedX !== position.x || call.placedY !== position.y) call.node.position(position);
        call.placedX = position.x;
        call.placedY = position.y;
        if (call.edge !== null && call.edgeFrom !== call.treeParent) {  // (attached to its parent since)
          call.edge.remove();
          call.edge = call.edgeFrom = null;
        }
        if (call.edge === null && call.treeParent !== null) {
          added.push({ group: "edges", data: { source: "c" + call.treeParent.id, target: "c" + call.id } });
          call.edgeFrom = call.treeParent;
        }
      }
      if (call.more !== null) drawMore(call, added);
    }
    for (const element of cy.add(added)) {
      const data = element.data();
      if (element.isEdge()) {
        if (data.target.startsWith("c")) state.calls.get(data.target.slice(1)).edge = element;
      } else if (data.call !== undefined) state.calls.get(data.call).node = element;
      else (data.more === "" ? state.top : state.calls.get(data.more)).moreNode = element;
    }
  });
}

function drawMore(call, added) {
  const more = call.more;
  const status = MORE_COLOR_ORDER.find((name) => more.statuses[name]) || "finished";
  const data = { label: "+" + more.count + " more", color: COLORS[status], first: more.first };
  const position = { x: call.moreX * COLUMN, y: call.moreY * ROW };
  if (call.moreNode !== null) {
    call.moreNode.data(data);
    call.moreNode.position(position);
    return;
  }
  const owner = call === state.top ? "" : call.id;
  added.push({ group: "nodes", position, data: { id: "m" + owner, more: owner, ...data } });
  if (call !== state.top) added.push({ group: "edges", data: { source: "c" + call.id, target: "m" + owner } });
}

// The graph node that stands for a call: its own, or the "+N more" node that counts it (null if not drawn yet).
function nodeOf(call) {
  if (call.node !== null) return call.node;
  let up = call;
  while (up.treeParent !== null && !up.treeParent.shown) up = up.treeParent;
  return (up.treeParent === null ? state.top : up.treeParent).moreNode;
}

// Show the whole tree, from the extent `layoutTree` knows (cy.fit measures every label: slow on big graphs).
function fit() {
  if (!state.extent) return;
  const left = -COLUMN / 2;  // (where the labels of the first and the last column end)
  const right = state.extent.width - COLUMN / 2;
  const top = -FIT_PADDING;
  const bottom = state.extent.height + 2 * FIT_PADDING;  // (the labels below the last row)
  const zoom = Math.min(MAX_FIT_ZOOM, (cy.width() - 2 * FIT_PADDING) / (right - left),
                        (cy.height() - 2 * FIT_PADDING) / (bottom - top));
  cy.viewport({ zoom, pan: { x: (cy.width() - zoom * (left + right)) / 2, y: FIT_PADDING - zoom * top } });
}

// Panning or zooming by hand stops fitting the graph in view as it grows; the Fit button brings it back.
cy.on("scrollzoom dragpan pinchzoom", () => { state.autoFit = false; });
document.getElementById("fit").onclick = () => { state.autoFit = true; fit(); };
cy.on("tap", "node", (event) => {
  const data = event.target.data();
  selectCall(data.call !== undefined ? data.call : data.first);
});

// --- the side panel --------------------------------------------------------------------------------------------------

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
  state.waiting.clear();
  state.top = newTop();
  state.counts = {};
  state.pending = [];
  if (state.applyFrame !== null) cancelAnimationFrame(state.applyFrame);
  if (state.layoutTimer !== null) clearTimeout(state.layoutTimer);
  state.applyFrame = state.layoutTimer = null;
  state.layoutDirty = false;
  state.extent = null;
  state.autoFit = true;
  state.selectedCall = state.selectedItem = state.selectedMessage = null;
  cy.elements().remove();
  document.getElementById("calls").innerHTML = "";
  document.getElementById("details").innerHTML = "<p>Click a call to see its messages.</p>";
  document.getElementById("messages").innerHTML = "";
  document.getElementById("message-meta").textContent = "";
  document.getElementById("message-text").textContent = "";
}

function openRun(runId, again) {
  if (state.run === runId && !again) return;
  resetRun();
  state.run = runId;
  document.getElementById("runs").value = runId;
  const events = new EventSource("/api/runs/" + encodeURIComponent(runId) + "/events");
  state.runEvents = events;
  events.onmessage = (message) => queueEvents(JSON.parse(message.data));
}

async function selectCall(id, refresh) {
  state.selectedCall = id;
  const selected = state.calls.get(id);
  if (state.selectedItem) state.selectedItem.classList.remove("selected");
  state.selectedItem = selected ? selected.item : null;
  if (state.selectedItem) state.selectedItem.classList.add("selected");
  if (!refresh) {
    cy.$(":selected").unselect();
    const node = selected ? nodeOf(selected) : null;
    if (node) node.select();
  }
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
  // (a stream the server closed for good, e.g. a restarted server that did not have the run yet, opens again)
  const closed = state.runEvents !== null && state.runEvents.readyState === EventSource.CLOSED;
  if (wanted && wanted !== state.run) openRun(wanted);
  else if (wanted && closed && runs.some((run) => run.id === wanted)) openRun(wanted, true);
}

document.getElementById("runs").onchange = (event) => { state.pinnedRun = event.target.value; openRun(state.pinnedRun); };
const requested = new URLSearchParams(location.search).get("run");
if (requested) state.pinnedRun = requested;
refreshRuns();
setInterval(refreshRuns, 1000);
