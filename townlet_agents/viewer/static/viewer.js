// Townlet viewer: draws the frames the server streams over /ws and sends the controls.
// Frames hold the state of every shown town (column arrays), so switching town needs no
// round trip; controls act on the server's one shared simulation.
"use strict";

const $ = (id) => document.getElementById(id);
const view = { meta: null, frame: null, selected: 0, curve: [], ws: null, thumbs: [] };
const ARROWS = { UP: [0, -1], DOWN: [0, 1], LEFT: [-1, 0], RIGHT: [1, 0] };

// --- connection: retry every second while the server is away ---------------------------
function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  view.ws = ws;
  ws.onopen = () => setStatus(true);
  ws.onmessage = (event) => receive(JSON.parse(event.data));
  ws.onclose = () => {
    setStatus(false);
    view.ws = null;
    setTimeout(connect, 1000);
  };
}

function setStatus(up) {
  const el = $("status");
  el.textContent = up ? "connected" : "disconnected (retrying)";
  el.className = up ? "up" : "down";
}

function send(message) {
  if (view.ws && view.ws.readyState === WebSocket.OPEN) view.ws.send(JSON.stringify(message));
}

function receive(m) {
  if (m.type === "meta") onMeta(m);
  else if (m.type === "frame") { view.frame = m; draw(); }
  else if (m.type === "control") onControl(m);
  else if (m.type === "curve") onCurve(m);
}

// --- world description ---------------------------------------------------------------------
function onMeta(m) {
  view.meta = m;
  $("level").textContent = `${m.level} · ${m.towns} towns`;
  $("policy").textContent = `policy: ${m.policy}` + (m.follow ? ` · following ${m.follow}` : "") +
    (m.status ? ` · ${m.status}` : "");
  view.selected = Math.min(view.selected, m.shown - 1);
  buildTowns(m);
  buildRows($("meters"), m.meters.map((x) => x.name), "meter");
  m.meters.forEach((x, i) => {
    const row = $("meters").children[i];
    if (x.critical !== null) row.querySelector(".band").style.width = `${x.critical * 100}%`;
    if (x.lethal) row.querySelector(".name").textContent += " †";
  });
  buildRows($("qvalues"), m.actions, "q");
  if (!m.q) $("qvalues").innerHTML = `<p class="none">no Q-values: this policy (${m.policy}) has none</p>`;
  $("legend").innerHTML = m.affordances.map((a) =>
    `<span style="background:${a.colour}" title="${a.name}">${a.label}</span>`).join("");
  $("curve-box").hidden = !m.follow;
  onControl(m);
}

function buildRows(box, names, kind) {
  box.innerHTML = "";
  for (const name of names) {
    const row = document.createElement("div");
    row.className = `row ${kind}`;
    row.dataset[kind] = name;
    row.innerHTML = `<span class="name">${name}</span><div class="bar"><div class="band"></div>` +
      `<div class="fill"></div></div><span class="value">–</span>`;
    box.appendChild(row);
  }
}

function buildTowns(m) {
  const box = $("towns"), select = $("town-select");
  box.innerHTML = "";
  select.innerHTML = "";
  view.thumbs = [];
  const size = Math.max(60, Math.min(120, 14 * m.grid));
  for (let t = 0; t < m.shown; t++) {
    const div = document.createElement("div");
    div.className = "thumb";
    div.dataset.town = t;
    div.innerHTML = `<canvas width="${size}" height="${size}"></canvas><div class="caption"></div>`;
    div.onclick = () => choose(t);
    box.appendChild(div);
    view.thumbs.push(div);
    select.add(new Option(`town ${t}`, t));
  }
  select.value = view.selected;
}

function choose(t) {
  view.selected = t;
  $("town-select").value = t;
  draw();
}

function onControl(m) {
  $("pause").classList.toggle("active", !m.playing);
  $("play").classList.toggle("active", m.playing);
  $("speed").value = m.fps;
  $("speed-label").textContent = Math.round(m.fps);
}

function onCurve(m) {
  view.curve = m.reset ? m.points.slice() : view.curve.concat(m.points);
  drawCurve();
}

// --- drawing -------------------------------------------------------------------------------
function isOpen(code, hour) {
  return !view.meta.temporal || view.meta.affordances[code].hours[hour] === "1";
}

function drawTown(canvas, t, detailed) {
  const m = view.meta, f = view.frame.towns, g = m.grid;
  const ctx = canvas.getContext("2d"), cell = canvas.width / g;
  const grid = f.grid[t], hour = f.hour[t];
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  for (let i = 0; i < g * g; i++) {
    const x = (i % g) * cell, y = Math.floor(i / g) * cell, ch = grid[i];
    ctx.globalAlpha = 1;
    ctx.fillStyle = "#3a3a40";
    ctx.fillRect(x + 1, y + 1, cell - 2, cell - 2);
    if (ch === ".") continue;
    const code = ch.charCodeAt(0) - 97, a = m.affordances[code], open = isOpen(code, hour);
    ctx.globalAlpha = open ? 1 : 0.3;  // closed affordances are dimmed
    ctx.fillStyle = a.colour;
    ctx.fillRect(x + 1, y + 1, cell - 2, cell - 2);
    ctx.fillStyle = "#fff";
    ctx.font = `${Math.max(8, Math.floor(cell / (detailed ? 4.2 : 2.6)))}px sans-serif`;
    ctx.fillText(detailed ? a.label : a.label.slice(0, 2), x + cell / 2, y + cell * (detailed ? 0.22 : 0.5));
    if (detailed && !open) ctx.fillText("closed", x + cell / 2, y + cell * 0.82);
  }
  ctx.globalAlpha = 1;
  const ax = f.cell[t] % g, ay = Math.floor(f.cell[t] / g);
  if (detailed && m.window > 0) {  // the agent's observation window, clipped to the town
    const r = m.window, x0 = Math.max(ax - r, 0), y0 = Math.max(ay - r, 0);
    const x1 = Math.min(ax + r, g - 1), y1 = Math.min(ay + r, g - 1);
    ctx.strokeStyle = "#f0c850";
    ctx.lineWidth = 2;
    ctx.strokeRect(x0 * cell + 1, y0 * cell + 1, (x1 - x0 + 1) * cell - 2, (y1 - y0 + 1) * cell - 2);
  }
  const cx = (ax + 0.5) * cell, cy = (ay + 0.58) * cell, rad = cell * 0.22;
  ctx.fillStyle = "#fafafa";
  ctx.strokeStyle = "#000";
  ctx.lineWidth = Math.max(1, cell / 24);
  ctx.beginPath();
  ctx.arc(cx, cy, rad, 0, 2 * Math.PI);
  ctx.fill();
  ctx.stroke();
  const action = f.action[t] >= 0 ? m.actions[f.action[t]] : null;
  if (action && ARROWS[action]) {  // the last move, as an arrow out of the agent
    const [dx, dy] = ARROWS[action];
    ctx.strokeStyle = "#f0c850";
    ctx.lineWidth = Math.max(2, cell / 14);
    ctx.beginPath();
    ctx.moveTo(cx - dx * rad * 0.4, cy - dy * rad * 0.4);
    ctx.lineTo(cx + dx * rad * 1.9, cy + dy * rad * 1.9);
    ctx.stroke();
  } else if (action) {
    ctx.fillStyle = "#000";
    ctx.font = `bold ${Math.max(8, Math.floor(rad))}px sans-serif`;
    ctx.fillText(action === "INTERACT" ? "I" : "W", cx, cy + 1);
  }
}

function draw() {
  if (!view.meta || !view.frame) return;
  const m = view.meta, fr = view.frame, f = fr.towns, t = view.selected;
  $("tick").textContent = fr.tick;
  $("finished").textContent = fr.finished;
  $("mean-survival").textContent = fr.mean_survival === null ? "–" : fr.mean_survival.toFixed(1);
  view.thumbs.forEach((div, i) => {
    drawTown(div.firstChild, i, false);
    div.classList.toggle("selected", i === t);
    // a lethal meter inside its critical band: this town is about to die
    const danger = m.meters.some((x, j) => x.lethal && x.critical !== null && f.meters[i][j] / 1000 < x.critical);
    div.classList.toggle("danger", danger);
    div.lastChild.textContent = `#${i} · ${f.steps[i]}${danger ? " ⚠" : ""}`;
  });
  $("town-title").textContent = `town ${t}`;
  drawTown($("town-canvas"), t, true);

  $("steps").textContent = `${f.steps[t]} / ${m.max_steps}`;
  const last = f.last[t] >= 0 ? `; last episode ${f.last[t]} steps (${m.causes[f.cause[t]]})` : "";
  $("survival").textContent = `${f.steps[t]} steps alive, episode ${f.episode[t]}${last}`;
  $("clock").textContent = m.temporal
    ? `${String(f.hour[t]).padStart(2, "0")}:00` : "no clock (temporal mechanics off)";
  $("interaction").textContent = f.progress[t] > 0
    ? `${m.affordances[f.current[t]].name} ${f.progress[t]}/${m.affordances[f.current[t]].ticks}` : "none";
  const moneyIndex = m.meters.findIndex((x) => x.name === "money");
  $("money").textContent = `$${(f.meters[t][moneyIndex] / 1000 * m.dollars_per_unit).toFixed(2)}`;
  $("last-action").textContent = f.action[t] >= 0 ? m.actions[f.action[t]] : "–";

  m.meters.forEach((x, i) => {
    const row = $("meters").children[i], v = f.meters[t][i] / 1000;
    const fill = row.querySelector(".fill");
    fill.style.width = `${v * 100}%`;
    fill.className = "fill" + (x.name === "money" ? " money" : x.critical !== null && v < x.critical ? " low" : "");
    row.querySelector(".value").textContent = x.name === "money"
      ? `$${(v * m.dollars_per_unit).toFixed(2)}` : v.toFixed(3);
  });
  if (f.q) drawQ(f.q[t], f.mask[t], f.next[t]);
}

function drawQ(q, mask, chosen) {
  const allowed = q.filter((_, a) => mask[a] === "1");
  const lo = Math.min(...allowed, 0), hi = Math.max(...allowed, lo + 1e-6);
  [...$("qvalues").children].forEach((row, a) => {
    const masked = mask[a] !== "1";
    row.classList.toggle("masked", masked);
    row.classList.toggle("chosen", a === chosen);
    row.querySelector(".fill").style.width = masked ? "0%" : `${((q[a] - lo) / (hi - lo)) * 100}%`;
    row.querySelector(".value").textContent = masked ? "masked" : q[a].toFixed(4);
  });
}

function drawCurve() {
  const canvas = $("curve"), ctx = canvas.getContext("2d"), pts = view.curve;
  const w = canvas.width, h = canvas.height, pad = 36;
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = "#9a9aa2";
  ctx.font = "12px sans-serif";
  if (pts.length === 0) { ctx.fillText("no metrics yet", pad, h / 2); return; }
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1), y0 = 0, y1 = Math.max(...ys, 1);
  const px = (x) => pad + ((x - x0) / (x1 - x0)) * (w - 2 * pad);
  const py = (y) => h - pad / 2 - ((y - y0) / (y1 - y0)) * (h - pad);
  ctx.fillText(`${y1.toFixed(0)}`, 4, py(y1) + 4);
  ctx.fillText("0", 4, py(0));
  ctx.fillText(`${x1.toLocaleString()} env steps`, w - pad - 140, h - 4);
  ctx.strokeStyle = "#f0c850";
  ctx.lineWidth = 2;
  ctx.beginPath();
  pts.forEach((p, i) => (i ? ctx.lineTo(px(p[0]), py(p[1])) : ctx.moveTo(px(p[0]), py(p[1]))));
  ctx.stroke();
  ctx.fillStyle = "#f0c850";
  pts.forEach((p) => ctx.fillRect(px(p[0]) - 2, py(p[1]) - 2, 4, 4));
}

// --- controls ------------------------------------------------------------------------------
$("pause").onclick = () => send({ cmd: "pause" });
$("play").onclick = () => send({ cmd: "play" });
$("step").onclick = () => send({ cmd: "step" });
$("reset").onclick = () => send({ cmd: "reset", town: view.selected });
$("speed").oninput = (e) => {
  $("speed-label").textContent = e.target.value;
  send({ cmd: "speed", fps: Number(e.target.value) });
};
$("town-select").onchange = (e) => choose(Number(e.target.value));
document.addEventListener("keydown", (e) => {
  if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
  if (e.key === " ") { send({ cmd: $("play").classList.contains("active") ? "pause" : "play" }); e.preventDefault(); }
  else if (e.key === "s") send({ cmd: "step" });
});

connect();
