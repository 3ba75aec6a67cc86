"use strict";
// The reader's page: worklist, film with points and intervals, correction, and the two grades.

const NAMES = ["upper_posterior", "upper_middle", "upper_anterior", "lower_posterior", "lower_middle", "lower_anterior"];
const ENDPLATES = [[0, 1], [1, 2], [3, 4], [4, 5]];
const HEIGHTS = [[0, 3], [1, 4], [2, 5]];
const GRADES = ["normal", "mild", "moderate", "severe"];
const COLORS = {normal: "#4cd04c", mild: "#ffd91a", moderate: "#ff8000", severe: "#e61a1a", invalid: "#999999"};
const HIT_PX = 9;

const $ = (id) => document.getElementById(id);
const state = {
  films: [], film: null, report: null, image: null, windowed: null, pixels: null,
  view: {scale: 1, tx: 0, ty: 0}, selected: -1, drag: null, adding: null, busy: false,
};

function setStatus(text, error = false) {
  const s = $("status");
  s.textContent = text;
  s.className = error ? "error" : "";
}

function esc(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}

async function api(method, url, body) {
  const options = {method, headers: {}};
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(url, options);
  const data = await response.json().catch(() => ({error: response.statusText}));
  if (!response.ok) {
    const error = new Error(data.error || response.statusText);
    error.status = response.status;
    throw error;
  }
  return data;
}

function reader() {
  return $("reader").value.trim() || undefined;
}

// Worklist --------------------------------------------------------------------------------------

async function loadWorklist() {
  state.films = await api("GET", "/api/films");
  renderWorklist();
}

function visibleFilms() {
  const flagged = $("flagged-only").checked;
  return state.films.filter((f) => !flagged || f.screening_positive);
}

function renderWorklist() {
  const rows = visibleFilms().map((f) => {
    if (f.error) {
      return `<tr class="error" data-film="${esc(f.film)}" title="${esc(f.error)}"><td>${esc(f.film)}</td><td colspan="5">unreadable</td></tr>`;
    }
    const current = f.film === state.film ? " current" : "";
    return `<tr class="film${current}" data-film="${esc(f.film)}"><td>${esc(f.film)}</td><td>${esc(f.patient_id)}</td>` +
      `<td class="grade-${esc(f.worst_grade)}">${esc(f.worst_grade)}</td>` +
      `<td>${f.screening_positive ? '<span class="flag">&#9873;</span>' : ""}</td>` +
      `<td class="disagree">${f.disagreements || ""}</td>` +
      `<td>${f.reviewed ? "&#10003;" : ""}</td></tr>`;
  });
  $("films").innerHTML = rows.join("");
  for (const tr of $("films").querySelectorAll("tr.film")) {
    tr.addEventListener("click", () => openFilm(tr.dataset.film));
  }
}

function stepFilm(delta) {
  const films = visibleFilms().filter((f) => !f.error);
  if (!films.length) return;
  const at = films.findIndex((f) => f.film === state.film);
  const next = films[Math.min(films.length - 1, Math.max(0, at + delta))];
  if (next && next.film !== state.film) openFilm(next.film);
}

// Film ------------------------------------------------------------------------------------------

async function openFilm(film, keepView = false) {
  document.body.dataset.ready = "false";
  state.film = film;
  state.adding = null;
  renderWorklist();
  try {
    const report = await api("GET", `/api/films/${encodeURIComponent(film)}`);
    if (!keepView || !state.image) {
      state.image = await loadImage(`/api/films/${encodeURIComponent(film)}/image?v=${Date.now()}`);
      state.pixels = imagePixels(state.image);
      applyWindow();
      fitView();
    }
    state.report = report;
    if (state.selected >= report.vertebrae.length || !keepView) state.selected = report.vertebrae.length ? 0 : -1;
    renderDetails();
    draw();
    setStatus(`${film}: version ${report.version}`);
  } catch (error) {
    setStatus(`${film}: ${error.message}`, true);
  }
  document.body.dataset.ready = "true";
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`the image could not be loaded (${url})`));
    img.src = url;
  });
}

function imagePixels(img) {
  const c = document.createElement("canvas");
  c.width = img.naturalWidth;
  c.height = img.naturalHeight;
  const ctx = c.getContext("2d");
  ctx.drawImage(img, 0, 0);
  return ctx.getImageData(0, 0, c.width, c.height);
}

// Window and level on the 8-bit film (a DICOM's VOI LUT is applied by the server first).
function applyWindow() {
  if (!state.pixels) return;
  const width = Number($("window").value), level = Number($("level").value);
  const lut = new Uint8ClampedArray(256);
  for (let v = 0; v < 256; v++) lut[v] = Math.round(((v - (level - width / 2)) / width) * 255);
  const src = state.pixels.data;
  const out = new ImageData(state.pixels.width, state.pixels.height);
  for (let i = 0; i < src.length; i += 4) {
    const g = lut[src[i]];
    out.data[i] = g; out.data[i + 1] = g; out.data[i + 2] = g; out.data[i + 3] = 255;
  }
  const c = document.createElement("canvas");
  c.width = out.width;
  c.height = out.height;
  c.getContext("2d").putImageData(out, 0, 0);
  state.windowed = c;
}

function canvasSize() {
  const canvas = $("canvas");
  const rect = canvas.getBoundingClientRect();
  if (canvas.width !== Math.round(rect.width) || canvas.height !== Math.round(rect.height)) {
    canvas.width = Math.round(rect.width);
    canvas.height = Math.round(rect.height);
  }
  return canvas;
}

function fitView() {
  const canvas = canvasSize();
  if (!state.image) return;
  const s = Math.min(canvas.width / state.image.naturalWidth, canvas.height / state.image.naturalHeight);
  state.view = {scale: s, tx: (canvas.width - s * state.image.naturalWidth) / 2, ty: (canvas.height - s * state.image.naturalHeight) / 2};
}

function toScreen(x, y) {
  const rect = $("canvas").getBoundingClientRect();
  return [rect.left + state.view.tx + x * state.view.scale, rect.top + state.view.ty + y * state.view.scale];
}

function toImage(event) {
  const rect = $("canvas").getBoundingClientRect();
  return [(event.clientX - rect.left - state.view.tx) / state.view.scale, (event.clientY - rect.top - state.view.ty) / state.view.scale];
}

function points(v) {
  return NAMES.map((n) => [v.keypoints[n].x, v.keypoints[n].y]);
}

function draw() {
  const canvas = canvasSize();
  const ctx = canvas.getContext("2d");
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (!state.windowed) return;
  const {scale, tx, ty} = state.view;
  ctx.setTransform(scale, 0, 0, scale, tx, ty);
  ctx.imageSmoothingEnabled = scale < 1;
  ctx.drawImage(state.windowed, 0, 0);
  const px = 1 / scale;
  const vertebrae = state.report ? state.report.vertebrae : [];
  vertebrae.forEach((v, i) => {
    const pts = points(v);
    const color = COLORS[v.grade] || COLORS.invalid;
    ctx.lineWidth = (i === state.selected ? 2.2 : 1.2) * px;
    ctx.strokeStyle = color;
    for (const [a, b] of ENDPLATES) line(ctx, pts[a], pts[b]);
    ctx.strokeStyle = "#1ab2ff";
    for (const [a, b] of HEIGHTS) line(ctx, pts[a], pts[b]);
    // The model's interval at its alpha, around the model's point.
    if (v.model && v.model.keypoints) {
      ctx.setLineDash([3 * px, 3 * px]);
      ctx.strokeStyle = color;
      ctx.lineWidth = px;
      NAMES.forEach((n) => {
        const eps = v.keypoints[n].eps_px;
        if (eps === undefined) return;
        const [mx, my] = v.model.keypoints[n];
        ctx.beginPath();
        ctx.arc(mx, my, eps, 0, 2 * Math.PI);
        ctx.stroke();
      });
      ctx.setLineDash([]);
    }
    ctx.fillStyle = color;
    for (const [x, y] of pts) {
      ctx.beginPath();
      ctx.arc(x, y, (i === state.selected ? 4 : 3) * px, 0, 2 * Math.PI);
      ctx.fill();
    }
    const ax = (pts[2][0] + pts[5][0]) / 2, ay = (pts[2][1] + pts[5][1]) / 2;
    const bx = (pts[0][0] + pts[3][0]) / 2, by = (pts[0][1] + pts[3][1]) / 2;
    ctx.font = `${12 * px}px system-ui, sans-serif`;
    ctx.textAlign = "center";
    const label = `${v.level ?? ""}${v.level && v.level_certain === false ? "?" : ""} ${v.grade}`.trim();
    ctx.fillText(label, ax + (ax - bx) * 0.7, ay + (ay - by) * 0.7);
  });
  if (state.adding) {
    ctx.fillStyle = "#ff66ff";
    for (const [x, y] of state.adding.points) {
      ctx.beginPath();
      ctx.arc(x, y, 3 * px, 0, 2 * Math.PI);
      ctx.fill();
    }
  }
}

function line(ctx, p, q) {
  ctx.beginPath();
  ctx.moveTo(p[0], p[1]);
  ctx.lineTo(q[0], q[1]);
  ctx.stroke();
}

// Details ---------------------------------------------------------------------------------------

function fmt(value, digits = 1) {
  return value === undefined || value === null ? "" : Number(value).toFixed(digits);
}

function renderDetails() {
  const r = state.report;
  if (!r) return;
  $("film-title").textContent = `${r.film} · ${r.patient_id ?? ""}${r.reviewed ? " · reviewed" : ""}`;
  const p = r.patient, m = r.model_patient || {};
  $("summary").innerHTML = `<table><tr><td></td><th>Reader's points</th><th>Model</th></tr>` +
    `<tr><td>Worst grade</td><td id="patient-worst" class="grade-${esc(p.worst_grade)}">${esc(p.worst_grade)}</td>` +
    `<td class="grade-${esc(m.worst_grade)}">${esc(m.worst_grade)}</td></tr>` +
    `<tr><td>Moderate or severe</td><td id="patient-count">${p.moderate_or_severe}</td><td>${m.moderate_or_severe ?? ""}</td></tr>` +
    `<tr><td>Screening</td><td id="patient-flag">${p.screening_positive ? '<span class="flag">positive</span>' : "negative"}</td>` +
    `<td>${m.screening_positive === undefined ? "" : (m.screening_positive ? '<span class="flag">positive</span>' : "negative")}</td></tr></table>`;
  const disagree = r.vertebrae.filter((v) => v.agrees_with_model === false);
  $("disagreement").textContent = disagree.length
    ? `The model and the reader's points disagree on ${disagree.map((v) => v.level || `#${v.index}`).join(", ")}.`
    : "";
  $("vertebrae").innerHTML = r.vertebrae.map((v, i) => {
    const model = v.model ? v.model.grade : "added";
    const mark = v.agrees_with_model === false ? '<span class="disagree" title="the model and the points disagree">&#8800;</span>' : "";
    const source = v.grade_source === "override" ? " (override)" : "";
    return `<tr data-index="${i}" class="${i === state.selected ? "current" : ""}"><td>${i}</td><td>${esc(v.level)}</td>` +
      `<td class="model-grade grade-${esc(model)}">${esc(model)}</td>` +
      `<td class="reader-grade grade-${esc(v.grade)}">${esc(v.grade)}${source}</td><td>${mark}</td></tr>`;
  }).join("");
  for (const tr of $("vertebrae").querySelectorAll("tr")) {
    tr.addEventListener("click", () => select(Number(tr.dataset.index)));
  }
  renderVertebra();
  $("audit").innerHTML = (r.audit || []).slice().reverse().map((a) =>
    `<li class="audit-entry">${esc(a.time)} ${esc(a.reader)}: ${esc(a.action)}` +
    `${a.vertebra !== null && a.vertebra !== undefined ? ` #${a.vertebra}` : ""}${a.level ? ` (${esc(a.level)})` : ""}` +
    `${a.before && a.before.grade && a.after && a.after.grade ? `: ${esc(a.before.grade)} &#8594; ${esc(a.after.grade)}` : ""}</li>`).join("");
}

function renderVertebra() {
  const r = state.report;
  const v = r && r.vertebrae[state.selected];
  if (!v) {
    $("vertebra").innerHTML = "";
    return;
  }
  const probs = v.grade_probabilities ? v.grade_probabilities.combined : null;
  const modelText = v.model
    ? `${esc(v.model.grade)}${probs ? " (" + GRADES.map((g) => `${g[0].toUpperCase()} ${fmt(probs[g], 2)}`).join(" ") + ")" : ""}`
    : "none: added by the reader";
  const mm = v.heights_mm;
  const heights = ["anterior", "middle", "posterior"].map((h) =>
    `${h[0].toUpperCase()} ${fmt(v.heights_px[h])} px${mm ? ` / ${fmt(mm[h], 2)} mm` : ""}`).join(" · ");
  const override = v.override ? `<div>Override by ${esc(v.override.reader)}: ${esc(v.override.reason)}</div>` : "";
  $("vertebra").innerHTML =
    `<div><strong>#${state.selected} ${esc(v.level ?? "")}</strong></div>` +
    `<div>Model (eq. 7): <span id="v-model-grade">${modelText}</span></div>` +
    `<div>Reader's points: <strong id="v-grade" class="grade-${esc(v.grade)}">${esc(v.grade)}</strong> ` +
    `<span id="v-source">${v.grade_source === "override" ? "(reader's override)" : "(crisp GSQ of the points)"}</span>` +
    `${v.agrees_with_model === false ? ' <span class="disagree" id="v-disagree">disagrees with the model</span>' : ""}</div>` +
    `<div>${heights}</div>` +
    `<div>d = ${fmt(100 * v.reduction)}% · APR ${fmt(v.ratios.APR, 2)} · MPR ${fmt(v.ratios.MPR, 2)} · MAR ${fmt(v.ratios.MAR, 2)}</div>` +
    `<div class="explanation" id="v-explanation">${esc(v.explanation)}</div>${override}` +
    `<div><select id="override-grade">${GRADES.map((g) => `<option>${g}</option>`).join("")}</select> ` +
    `<input id="override-reason" placeholder="reason" size="16"> <button id="override">Override grade</button> ` +
    `${v.override ? '<button id="clear-override">Remove override</button>' : ""}</div>` +
    `<p><button id="delete">Delete vertebra</button></p>`;
  $("override").addEventListener("click", overrideGrade);
  if (v.override) $("clear-override").addEventListener("click", () => change("PUT", `${vertebraUrl()}/grade`, {grade: null}));
  $("delete").addEventListener("click", deleteVertebra);
}

function select(index) {
  if (!state.report || !state.report.vertebrae.length) return;
  const n = state.report.vertebrae.length;
  state.selected = ((index % n) + n) % n;
  renderDetails();
  draw();
}

// Changes ---------------------------------------------------------------------------------------

function vertebraUrl(index = state.selected) {
  return `/api/films/${encodeURIComponent(state.film)}/vertebrae/${index}`;
}

// Every change carries the version it was made on; another tab's change in between gives 409.
// A DELETE carries them in its query, the others in their body.
async function change(method, url, body = {}) {
  state.busy = true;
  try {
    const stamp = {version: state.report.version, reader: reader()};
    const result = method === "DELETE"
      ? await api(method, `${url}?version=${stamp.version}${stamp.reader ? `&reader=${encodeURIComponent(stamp.reader)}` : ""}`)
      : await api(method, url, {...body, ...stamp});
    await openFilm(state.film, true);
    await loadWorklist();
    setStatus(`saved: version ${result.version}${result.drawing_error ? " (" + result.drawing_error + ")" : ""}`);
    return result;
  } catch (error) {
    // Nothing was saved: show the film as it is on the server (a dragged point goes back).
    await openFilm(state.film, true);
    setStatus(error.status === 409 ? `${error.message} (reloaded)` : error.message, true);
  } finally {
    state.busy = false;
  }
}

function overrideGrade() {
  const reason = $("override-reason").value.trim();
  if (!reason) {
    setStatus("an override needs a reason", true);
    return;
  }
  change("PUT", `${vertebraUrl()}/grade`, {grade: $("override-grade").value, reason});
}

async function deleteVertebra() {
  const v = state.report.vertebrae[state.selected];
  if (!v || !confirm(`Delete vertebra #${state.selected} ${v.level ?? ""}?`)) return;
  await change("DELETE", vertebraUrl());
}

function startAdding() {
  const level = $("add-level").value.trim();
  if (!level) {
    setStatus("type the level of the vertebra to add first", true);
    return;
  }
  state.adding = {level, points: []};
  setStatus(`adding ${level}: click ${NAMES[0]} (1 of 6), Esc cancels`);
}

async function addPoint(x, y) {
  state.adding.points.push([x, y]);
  const k = state.adding.points.length;
  draw();
  if (k < NAMES.length) {
    setStatus(`adding ${state.adding.level}: click ${NAMES[k]} (${k + 1} of 6), Esc cancels`);
    return;
  }
  const {level, points} = state.adding;
  state.adding = null;
  await change("POST", `/api/films/${encodeURIComponent(state.film)}/vertebrae`, {level, keypoints: points});
}

async function accept() {
  if (!state.report) return;
  const result = await change("POST", `/api/films/${encodeURIComponent(state.film)}/accept`);
  if (result) stepFilm(1);
}

// Mouse and keyboard ----------------------------------------------------------------------------

function nearestPoint(event) {
  if (!state.report) return null;
  let best = null;
  state.report.vertebrae.forEach((v, i) => {
    NAMES.forEach((n, k) => {
      const [sx, sy] = toScreen(v.keypoints[n].x, v.keypoints[n].y);
      const d = Math.hypot(sx - event.clientX, sy - event.clientY);
      if (d <= HIT_PX && (!best || d < best.d || (d === best.d && i === state.selected))) best = {i, k, d};
    });
  });
  return best;
}

function onMouseDown(event) {
  if (!state.report || state.busy) return;
  const [x, y] = toImage(event);
  if (state.adding) {
    addPoint(x, y);
    return;
  }
  const hit = nearestPoint(event);
  if (hit) {
    if (hit.i !== state.selected) select(hit.i);
    state.drag = {kind: "point", i: hit.i, k: hit.k, moved: false};
  } else {
    state.drag = {kind: "pan", x: event.clientX, y: event.clientY};
  }
}

function onMouseMove(event) {
  const drag = state.drag;
  if (!drag) return;
  if (drag.kind === "pan") {
    state.view.tx += event.clientX - drag.x;
    state.view.ty += event.clientY - drag.y;
    drag.x = event.clientX;
    drag.y = event.clientY;
  } else {
    const [x, y] = toImage(event);
    const w = state.image.naturalWidth, h = state.image.naturalHeight;
    const kp = state.report.vertebrae[drag.i].keypoints[NAMES[drag.k]];
    kp.x = Math.min(w, Math.max(0, x));
    kp.y = Math.min(h, Math.max(0, y));
    drag.moved = true;
  }
  draw();
}

async function onMouseUp() {
  const drag = state.drag;
  state.drag = null;
  if (!drag || drag.kind !== "point" || !drag.moved) return;
  await change("PUT", vertebraUrl(drag.i), {keypoints: points(state.report.vertebrae[drag.i])});
}

function onWheel(event) {
  event.preventDefault();
  const rect = $("canvas").getBoundingClientRect();
  const cx = event.clientX - rect.left, cy = event.clientY - rect.top;
  const factor = Math.exp(-event.deltaY * 0.0015);
  const v = state.view;
  v.tx = cx - (cx - v.tx) * factor;
  v.ty = cy - (cy - v.ty) * factor;
  v.scale *= factor;
  draw();
}

function onKey(event) {
  if (["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName)) return;
  const keys = {
    n: () => stepFilm(1), p: () => stepFilm(-1),
    j: () => select(state.selected + 1), k: () => select(state.selected - 1),
    a: accept, Delete: deleteVertebra,
    Escape: () => { state.adding = null; draw(); setStatus("adding cancelled"); },
  };
  if (event.key === "Tab" && state.report) {
    event.preventDefault();
    select(state.selected + (event.shiftKey ? -1 : 1));
  } else if (keys[event.key]) {
    event.preventDefault();
    keys[event.key]();
  }
}

async function exportCoco() {
  try {
    const r = await api("GET", "/api/export/coco");
    setStatus(`wrote ${r.images} films, ${r.annotations} vertebrae to ${r.written}`);
  } catch (error) {
    setStatus(error.message, true);
  }
}

async function init() {
  const canvas = $("canvas");
  canvas.addEventListener("mousedown", onMouseDown);
  window.addEventListener("mousemove", onMouseMove);
  window.addEventListener("mouseup", onMouseUp);
  canvas.addEventListener("wheel", onWheel, {passive: false});
  window.addEventListener("keydown", onKey);
  window.addEventListener("resize", () => { fitView(); draw(); });
  for (const id of ["window", "level"]) $(id).addEventListener("input", () => { applyWindow(); draw(); });
  $("reset-view").addEventListener("click", () => { fitView(); draw(); });
  $("flagged-only").addEventListener("change", renderWorklist);
  $("add").addEventListener("click", startAdding);
  $("accept").addEventListener("click", accept);
  $("export").addEventListener("click", exportCoco);
  try {
    const config = await api("GET", "/api/config");
    $("reader").value = config.reader;
    $("results").textContent = config.results;
    await loadWorklist();
    setStatus(`${state.films.length} films`);
  } catch (error) {
    setStatus(error.message, true);
  }
  document.body.dataset.ready = "true";
}

window.review = {state, toScreen, openFilm, select};
init();
