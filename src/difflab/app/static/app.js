// difflab app: tabs, forms, job polling with live preview and Stop, painting, parameter PNG drop. No libraries.
"use strict";
const $ = (id) => document.getElementById(id);
const active = {};          // tab -> running job id
let lastTile = null;        // URL of the last generated tile (for "use last generated image")
let config = null;

function message(text) {
  const m = $("message");
  m.textContent = text || "";
  m.classList.toggle("show", !!text);
}

async function api(path, body) {
  const opts = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({ error: `the server answered ${r.status} without a message.` }));
  if (!r.ok || data.error) throw new Error(data.error || `the server answered ${r.status}.`);
  return data;
}

function formParams(form) {
  const p = {};
  for (const el of form.elements) {
    if (!el.name) continue;
    if (el.type === "checkbox") p[el.name] = el.checked;
    else if (el.type === "number" || el.type === "range") p[el.name] = el.value === "" ? null : Number(el.value);
    else p[el.name] = el.value;
  }
  return p;
}

function setForm(form, params) {
  for (const [k, v] of Object.entries(params)) {
    const el = form.elements[k];
    if (!el || el.type === "file") continue;
    if (el.type === "checkbox") el.checked = !!v;
    else el.value = Array.isArray(v) ? v.join(",") : (v === null ? "" : v);
  }
}

function fillSelect(sel, values, chosen) {
  sel.innerHTML = "";
  for (const v of values) {
    const o = document.createElement("option");
    o.value = v; o.textContent = v === "" ? "(default)" : v;
    sel.appendChild(o);
  }
  if (chosen !== undefined) sel.value = chosen;
}

// ---------------------------------------------------------------------------------------------- jobs
async function runJob(tab, path, body, onDone) {
  message("");
  const stop = $(`${tab}-stop`), run = $(`${tab}-run`), bar = $(`${tab}-progress`), status = $(`${tab}-status`);
  let job;
  try { job = await api(path, body); } catch (e) { message(e.message); return; }
  active[tab] = job.job;
  stop.disabled = false; run.disabled = true;
  bar.value = 0;
  try {
    for (;;) {
      const s = await api(`/api/jobs/${job.job}`);
      bar.max = s.total; bar.value = s.done;
      if (s.status === "waiting") status.textContent = `waiting: place ${s.place} in the queue`;
      else if (s.status === "running") status.textContent = `running: ${s.done} / ~${s.total} network evaluations`;
      if (s.preview && s.preview.x_t) { $(`${tab}-xt`).src = s.preview.x_t; $(`${tab}-x0`).src = s.preview.x0; }
      if (s.status === "done") { status.textContent = `done in ${s.seconds} s`; bar.value = bar.max; onDone(s.result, job.job); break; }
      if (s.status === "failed") { status.textContent = "failed"; message(s.error); break; }
      if (s.status === "stopped") { status.textContent = "stopped"; break; }
      await new Promise((r) => setTimeout(r, 200));
    }
  } catch (e) { message(e.message); }
  delete active[tab];
  stop.disabled = true; run.disabled = false;
}

function stopJob(tab) {
  if (active[tab]) api(`/api/jobs/${active[tab]}/stop`, {}).catch((e) => message(e.message));
}

window.addEventListener("pagehide", () => {
  for (const id of Object.values(active)) navigator.sendBeacon(`/api/jobs/${id}/stop`, "{}");
});

function showTiles(container, result, label) {
  container.innerHTML = "";
  result.tiles.forEach((url, i) => {
    const d = document.createElement("div");
    d.className = "tile";
    const a = document.createElement("a");
    a.href = url; a.download = `difflab-${label(i).replace(/[^a-z0-9]+/gi, "-")}.png`; a.className = "download";
    const img = document.createElement("img");
    img.src = url; img.alt = label(i);
    a.appendChild(img);
    d.appendChild(a);
    d.appendChild(document.createTextNode(label(i)));
    container.appendChild(d);
  });
}

// ---------------------------------------------------------------------------------------------- tabs
for (const b of document.querySelectorAll(".tab")) {
  b.addEventListener("click", () => {
    message("");
    for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === b);
    for (const p of document.querySelectorAll(".panel")) p.classList.toggle("active", p.id === b.dataset.tab);
    if (b.dataset.tab === "toys") refreshToy();
  });
}

// ---------------------------------------------------------------------------------------------- generate
$("generate-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const p = formParams(ev.target);
  runJob("generate", "/api/generate", p, (result) => {
    showTiles($("generate-tiles"), result, (i) => `seed ${result.seeds[i]}`);
    lastTile = result.tiles[0];
    $("generate-status").textContent += ` · ${result.nfe} network evaluations`;
  });
});
$("generate-stop").addEventListener("click", () => stopJob("generate"));

// ---------------------------------------------------------------------------------------------- paint & edit
const imageCanvas = $("edit-image"), overlay = $("edit-overlay");
const ictx = imageCanvas.getContext("2d"), octx = overlay.getContext("2d");
const maskCanvas = document.createElement("canvas");
maskCanvas.width = overlay.width; maskCanvas.height = overlay.height;
const mctx = maskCanvas.getContext("2d");
ictx.fillStyle = "#000"; ictx.fillRect(0, 0, imageCanvas.width, imageCanvas.height);
let drawing = false;

let last = null;
function strokeAt(x, y) {
  // a round-capped line from the last point: a fast brush leaves no gaps
  const size = Number($("brush-size").value), mode = $("brush-mode").value;
  const from = last || [x, y];
  const line = (ctx, color) => {
    ctx.strokeStyle = color; ctx.lineWidth = size; ctx.lineCap = "round"; ctx.lineJoin = "round";
    ctx.beginPath(); ctx.moveTo(from[0], from[1]); ctx.lineTo(x, y); ctx.stroke();
  };
  if (mode === "mask") {
    line(mctx, "#fff");
    // the overlay shows the mask itself (its union), so crossing strokes do not darken
    octx.clearRect(0, 0, overlay.width, overlay.height);
    octx.globalAlpha = 0.45; octx.drawImage(tinted(), 0, 0); octx.globalAlpha = 1;
  } else line(ictx, mode === "ink" ? "#fff" : "#000");
  last = [x, y];
}
const tint = document.createElement("canvas");
tint.width = overlay.width; tint.height = overlay.height;
function tinted() {
  const t = tint.getContext("2d");
  t.globalCompositeOperation = "source-over";
  t.clearRect(0, 0, tint.width, tint.height);
  t.drawImage(maskCanvas, 0, 0);
  t.globalCompositeOperation = "source-in";
  t.fillStyle = "#ff3c3c"; t.fillRect(0, 0, tint.width, tint.height);
  return tint;
}
function pos(ev) { const r = overlay.getBoundingClientRect(); return [ev.clientX - r.left, ev.clientY - r.top]; }
overlay.addEventListener("pointerdown", (ev) => { drawing = true; last = null; strokeAt(...pos(ev)); });
overlay.addEventListener("pointermove", (ev) => { if (drawing) strokeAt(...pos(ev)); });
window.addEventListener("pointerup", () => { drawing = false; last = null; });
$("clear-mask").addEventListener("click", () => {
  mctx.clearRect(0, 0, maskCanvas.width, maskCanvas.height); octx.clearRect(0, 0, overlay.width, overlay.height);
});
function loadImage(src) {
  const img = new Image();
  img.onload = () => { ictx.imageSmoothingEnabled = false; ictx.drawImage(img, 0, 0, imageCanvas.width, imageCanvas.height); };
  img.src = src;
}
$("edit-upload").addEventListener("change", (ev) => {
  const f = ev.target.files[0];
  if (!f) return;
  const r = new FileReader();
  r.onload = () => loadImage(r.result);
  r.readAsDataURL(f);
});
$("use-tile").addEventListener("click", () => { if (lastTile) loadImage(lastTile); else message("generate an image first."); });
const strength = document.querySelector("#edit-form [name=strength]");
strength.addEventListener("input", () => { $("strength-value").textContent = strength.value; });

$("edit-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const p = formParams(ev.target);
  p.image = imageCanvas.toDataURL("image/png");
  if (p.task === "inpaint") p.mask = maskCanvas.toDataURL("image/png");
  runJob("edit", "/api/edit", p, (result) => {
    $("edit-result").src = result.grid;
    showTiles($("edit-tiles"), result, (i) => `output ${i}`);
  });
});
$("edit-stop").addEventListener("click", () => stopJob("edit"));

// ---------------------------------------------------------------------------------------------- compare
$("compare-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  runJob("compare", "/api/compare", formParams(ev.target), (result) => { $("compare-grid").src = result.grid; });
});
$("compare-stop").addEventListener("click", () => stopJob("compare"));

// ---------------------------------------------------------------------------------------------- toys
let toyBusy = false, toyAgain = false;
async function refreshToy() {
  if (toyBusy) { toyAgain = true; return; }
  toyBusy = true;
  const t = $("toy-t").value, model = $("toy-model").value;
  $("toy-t-value").textContent = Number(t).toFixed(2);
  try {
    const r = await fetch(`/api/toy?model=${encodeURIComponent(model)}&t=${t}`);
    if (!r.ok) throw new Error((await r.json()).error);
    const blob = await r.blob();
    const old = $("toy-image").src;
    $("toy-image").src = URL.createObjectURL(blob);
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
  } catch (e) { message(e.message); }
  toyBusy = false;
  if (toyAgain) { toyAgain = false; refreshToy(); }
}
$("toy-t").addEventListener("input", refreshToy);
$("toy-model").addEventListener("change", refreshToy);

// ---------------------------------------------------------------------------------------------- keep: PNG drop
async function restoreFrom(file) {
  const url = await new Promise((ok) => { const r = new FileReader(); r.onload = () => ok(r.result); r.readAsDataURL(file); });
  try {
    const { params } = await api("/api/params", { png: url });
    const tab = params.task ? "edit" : "generate";
    setForm($(`${tab}-form`), params);
    document.querySelector(`.tab[data-tab=${tab}]`).click();
    message("");
    $(`${tab}-status`).textContent = "parameters restored from the PNG";
  } catch (e) { message(e.message); }
}
document.addEventListener("dragover", (ev) => { ev.preventDefault(); document.body.classList.add("dragging"); });
document.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
document.addEventListener("drop", (ev) => {
  ev.preventDefault(); document.body.classList.remove("dragging");
  const f = ev.dataTransfer.files[0];
  if (f) restoreFrom(f);
});

// ---------------------------------------------------------------------------------------------- start
(async () => {
  try { config = await api("/api/config"); } catch (e) { message(e.message); return; }
  const names = config.models.map((m) => m.name);
  for (const s of document.querySelectorAll(".model-select")) fillSelect(s, names);
  for (const s of document.querySelectorAll(".sampler-select")) fillSelect(s, config.samplers, "ddim");
  for (const s of document.querySelectorAll(".disc-select")) fillSelect(s, ["", ...config.discretizations], "");
  fillSelect($("toy-model"), config.toys);
  const classifiersOf = (name) => (config.models.find((m) => m.name === name) || { classifiers: [] }).classifiers;
  for (const form of document.querySelectorAll("form")) {  // a model offers only the samplers made for its kind
    const model = form.elements.model, sampler = form.querySelector(".sampler-select");
    if (!model || !sampler) continue;
    const refresh = () => {
      const m = config.models.find((x) => x.name === model.value);
      const usable = m ? m.samplers : config.samplers;
      fillSelect(sampler, usable, usable.includes(sampler.value) ? sampler.value : (m && usable.includes(m.sampler) ? m.sampler : usable[0]));
    };
    model.addEventListener("change", refresh);
    refresh();
  }
  for (const form of document.querySelectorAll("form")) {
    const model = form.elements.model, clf = form.querySelector(".classifier-select");
    if (!model || !clf) continue;
    const refresh = () => fillSelect(clf, ["", ...classifiersOf(model.value)], "");
    model.addEventListener("change", refresh);
    refresh();
  }
  for (const f of ["generate-form", "edit-form", "compare-form"]) {
    $(f).elements.num.max = f === "generate-form" ? config.limits.max_images : 4;
  }
  if (!names.length) message("no image model is loaded; start the app with one, e.g. difflab app mnist.");
})();
