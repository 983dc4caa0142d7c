// The chord-p2p dashboard: draws the ring view of /api/ring (kept live by /api/events),
// shows a member's panel, lists the ring's files, and puts files by picker or drag and drop.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const R = 220;          // the ring's radius in the SVG's units
const FILE_R = 190;     // where file marks sit, inside the ring
let view = null;        // the last ring view
let selected = null;    // the id (hex) of the member whose panel is shown
let token = sessionStorage.getItem("chord-token");

const $ = (id) => document.getElementById(id);

function point(angle, radius) {
  const a = (angle * Math.PI) / 180;
  return [radius * Math.sin(a), -radius * Math.cos(a)];
}

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

function short(hex) {
  return hex ? hex.slice(0, 8) : "—";
}

function size(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function fileUrl(name) {
  return "/files/" + name.split("/").map(encodeURIComponent).join("/");
}

function copiesClass(n) {
  return n >= 3 ? "c3" : n === 2 ? "c2" : "c1";
}

function render(v) {
  view = v;
  const members = v.members || [];
  const byId = new Map(members.map((m) => [m.id, m]));
  if (!selected || !byId.has(selected)) selected = v.self;
  $("summary").textContent = `${members.length} member${members.length === 1 ? "" : "s"}` +
    `${v.cut_short ? " (walk cut short)" : ""}, ${(v.files || []).length} files` +
    (v.error ? ` — ${v.error}` : "");
  $("ring").setAttribute("data-members", members.length);
  drawArcs(members, byId);
  drawFingers(byId.get(selected), byId);
  drawFiles(v.files || []);
  drawMembers(members, v.self);
  renderPanel(byId.get(selected), byId);
  renderFiles(v.files || []);
}

function drawArcs(members, byId) {
  const g = $("arcs");
  clear(g);
  for (const m of members) {
    const next = (m.successors || []).find((s) => byId.has(s.id) && s.id !== m.id);
    if (!next) continue;
    const to = byId.get(next.id);
    let sweep = (to.angle - m.angle + 360) % 360;
    const [x1, y1] = point(m.angle, R);
    const [x2, y2] = point(to.angle, R);
    const large = sweep > 180 ? 1 : 0;
    el("path", {
      class: "arc", "data-from": m.id, "data-to": to.id,
      d: `M ${x1} ${y1} A ${R} ${R} 0 ${large} 1 ${x2} ${y2}`,
    }, g);
  }
}

function drawFingers(m, byId) {
  const g = $("fingers");
  clear(g);
  if (!m) return;
  const seen = new Set();
  const [x1, y1] = point(m.angle, R);
  for (const f of m.fingers || []) {
    const to = byId.get(f.node.id);
    if (!to || to.id === m.id || seen.has(to.id)) continue;
    seen.add(to.id);
    const [x2, y2] = point(to.angle, R);
    el("line", { class: "finger", "data-from": m.id, "data-to": to.id, x1, y1, x2, y2 }, g);
  }
}

function drawFiles(files) {
  const g = $("files-layer");
  clear(g);
  for (const f of files) {
    const [cx, cy] = point(f.angle, FILE_R);
    const mark = el("circle", {
      class: `file ${copiesClass(f.copies)}`, cx, cy, r: 6,
      "data-key": f.key, "data-angle": f.angle, "data-name": f.name, "data-copies": f.copies,
    }, g);
    el("title", {}, mark).textContent = `${f.name}: ${size(f.size)}, ${f.copies} copies`;
  }
}

function drawMembers(members, self) {
  const g = $("members");
  clear(g);
  for (const m of members) {
    const [cx, cy] = point(m.angle, R);
    const classes = ["member"];
    if (m.id === self) classes.push("self");
    if (m.id === selected) classes.push("selected");
    const c = el("circle", {
      class: classes.join(" "), cx, cy, r: 11,
      "data-id": m.id, "data-angle": m.angle, "data-peer-id": m.peer_id,
    }, g);
    el("title", {}, c).textContent = `${m.id}\n${m.peer_id}`;
    c.addEventListener("click", () => { selected = m.id; render(view); });
    const [lx, ly] = point(m.angle, R + 20);
    const anchor = lx > 10 ? "start" : lx < -10 ? "end" : "middle";
    const label = el("text", { class: "member-label", x: lx, y: ly + 4, "text-anchor": anchor }, g);
    label.textContent = short(m.id).slice(0, 4);
  }
}

function dl(parent, term, values) {
  const dt = document.createElement("dt");
  dt.textContent = term;
  parent.appendChild(dt);
  for (const v of values.length ? values : ["—"]) {
    const dd = document.createElement("dd");
    dd.textContent = v;
    parent.appendChild(dd);
  }
}

function renderPanel(m, byId) {
  const panel = $("panel");
  clear(panel);
  const h = document.createElement("h2");
  h.textContent = m ? (m.id === view.self ? "This node" : "Member") : "Node";
  panel.appendChild(h);
  if (!m) return;
  panel.setAttribute("data-id", m.id);
  const list = document.createElement("dl");
  dl(list, "Id", [m.id]);
  dl(list, "Peer id", [m.peer_id]);
  dl(list, "Addresses", m.addrs || []);
  dl(list, "Predecessor", m.predecessor ? [m.predecessor.id] : []);
  dl(list, "Successors", (m.successors || []).map((s) => s.id));
  const fingers = [];
  let last = null;
  (m.fingers || []).forEach((f) => {
    if (f.node.id !== last) fingers.push(`${short(f.start)}… → ${f.node.id}`);
    last = f.node.id;
  });
  dl(list, "Fingers (distinct)", fingers);
  dl(list, "Reachability", [m.reachability || "unknown"]);
  dl(list, "Connections", [String((m.connections || []).length)]);
  const s = m.storage;
  dl(list, "Storage", s ? [`${s.files} files, ${size(s.used)} used` +
    (s.limit != null ? ` of ${size(s.limit)}` : "")] : []);
  panel.appendChild(list);
}

function renderFiles(files) {
  const body = $("files").tBodies[0];
  clear(body);
  $("file-count").textContent = `(${files.length})`;
  for (const f of files) {
    const tr = body.insertRow();
    tr.className = "file-row";
    tr.setAttribute("data-name", f.name);
    const a = document.createElement("a");
    a.className = "download";
    a.href = fileUrl(f.name);
    a.setAttribute("download", f.name.split("/").pop());
    a.textContent = f.name;
    tr.insertCell().appendChild(a);
    tr.insertCell().textContent = size(f.size);
    const owner = tr.insertCell();
    owner.className = "mono";
    owner.textContent = short(f.owner);
    const copies = tr.insertCell();
    copies.className = copiesClass(f.copies);
    copies.textContent = f.copies;
    const up = tr.insertCell();
    up.className = "mono";
    up.textContent = f.uploader.slice(-8);
  }
}

// Live updates: server-sent events, or polling every second where they are missing.
function connect() {
  if (!window.EventSource) {
    const poll = () => fetch("/api/ring").then((r) => r.json()).then(render)
      .catch(() => {}).finally(() => setTimeout(poll, 1000));
    poll();
    return;
  }
  const events = new EventSource("/api/events");
  events.addEventListener("ring", (e) => render(JSON.parse(e.data)));
  events.onopen = () => { $("live").textContent = "live"; $("live").classList.remove("off"); };
  events.onerror = () => { $("live").textContent = "reconnecting…"; $("live").classList.add("off"); };
}

// Uploads: PUT /files/{name}, with progress; a token is asked for only when the node wants one.
function upload(file) {
  const item = document.createElement("li");
  item.className = "upload";
  item.setAttribute("data-name", file.name);
  item.textContent = `${file.name}: starting`;
  $("uploads").appendChild(item);
  const send = () => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", fileUrl(file.name));
    if (token) xhr.setRequestHeader("Authorization", "Bearer " + token);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) item.textContent = `${file.name}: ${Math.round((100 * e.loaded) / e.total)}%`;
    };
    xhr.onload = () => {
      if (xhr.status === 401 && (token = prompt("This node wants its HTTP token to put files:"))) {
        sessionStorage.setItem("chord-token", token);
        return send();
      }
      const ok = xhr.status >= 200 && xhr.status < 300;
      item.className = ok ? "upload done" : "upload failed";
      let why = xhr.statusText;
      try { why = JSON.parse(xhr.responseText).error || why; } catch (_) { /* not JSON */ }
      item.textContent = ok ? `${file.name}: put` : `${file.name}: failed (${xhr.status} ${why})`;
    };
    xhr.onerror = () => { item.className = "upload failed"; item.textContent = `${file.name}: failed`; };
    xhr.send(file);
  };
  send();
}

function setupUploads() {
  const input = $("file-input");
  input.addEventListener("change", () => {
    for (const f of input.files) upload(f);
    input.value = "";
  });
  const drop = $("drop");
  document.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  document.addEventListener("dragleave", () => drop.classList.remove("over"));
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    for (const f of e.dataTransfer.files) upload(f);
  });
}

// Lookup: the key's place on the ring, the owner the node found, and the path hop by hop:
// a numbered chord from each node that answered to the next, the last one to the owner.
function drawLookupPath(found, g) {
  const at = (id) => view && view.members.find((m) => m.id === id);
  const stops = found.path.concat([found.owner.id]).map(at);
  for (let i = 0; i + 1 < stops.length; i++) {
    const [from, to] = [stops[i], stops[i + 1]];
    if (!from || !to || from.id === to.id) continue;
    const [x1, y1] = point(from.angle, R);
    const [x2, y2] = point(to.angle, R);
    el("line", { class: "lookup-hop", x1, y1, x2, y2, "data-hop": i + 1,
      "data-from": from.id, "data-to": to.id }, g);
    const label = el("text", { class: "lookup-hop-label", x: (x1 + x2) / 2, y: (y1 + y2) / 2 }, g);
    label.textContent = String(i + 1);
  }
}

function setupLookup() {
  $("lookup-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const name = $("lookup-name").value.trim();
    if (!name) return;
    fetch("/api/lookup/" + name.split("/").map(encodeURIComponent).join("/"))
      .then((r) => r.json())
      .then((found) => {
        const g = $("lookup-layer");
        clear(g);
        if (found.error) { $("lookup-result").textContent = found.error; return; }
        const owner = view && view.members.find((m) => m.id === found.owner.id);
        const key = parseInt(found.key.slice(0, 12), 16) / 2 ** 48 * 360;
        const [kx, ky] = point(key, R);
        if (owner) {
          const [ox, oy] = point(owner.angle, R);
          el("line", { class: "lookup-line", x1: kx, y1: ky, x2: ox, y2: oy }, g);
        }
        el("circle", { class: "lookup-key", cx: kx, cy: ky, r: 5, "data-key": found.key }, g);
        drawLookupPath(found, g);
        const via = found.path.map((id) => short(id) + "…").join(" → ");
        $("lookup-result").textContent =
          `key ${short(found.key)}… → ${short(found.owner.id)}… in ${found.hops} hops` +
          (via ? ` (asked ${via})` : "");
      })
      .catch((err) => { $("lookup-result").textContent = String(err); });
  });
}

setupUploads();
setupLookup();
connect();
