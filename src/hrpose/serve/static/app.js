// hrpose web page: no build step, no dependencies. Sends an image (or webcam frames) to
// POST /v1/poses and draws the people it answers on a canvas over the image.
"use strict";

const $ = (sel) => document.querySelector(sel);
// One colour per drawn person, as hrpose.viz.draw.PALETTE.
const PALETTE = [
  [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
  [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
  [0, 128, 128], [220, 190, 255], [170, 110, 40], [255, 250, 200], [128, 0, 0],
];

// What the page did, for people reading the status line and for the browser tests.
const state = {
  skeleton: [], limbRatio: 3, result: null, drawnPeople: 0, framesDrawn: 0, fps: 0,
  live: false, log: [], error: null,
};
window.hrpose = state;

const imageCanvas = $("#image");
const overlay = $("#overlay");
const person = $("#person");
const joint = $("#joint");
const video = $("#video");
let stream = null;
let answers = []; // times of the last live answers, for frames/s

function setStatus(text, isError = false) {
  $("#status").textContent = text;
  $("#status").classList.toggle("error", isError);
  state.error = isError ? text : null;
}

async function loadModel() {
  try {
    const r = await fetch("/v1/model");
    if (!r.ok) throw new Error((await r.json()).error.message);
    const info = await r.json();
    state.skeleton = info.model.keypoint_spec.skeleton;
    const over = info.server.overrides;
    state.limbRatio = over.limb_ratio;
    person.value = over.person_threshold;
    joint.value = over.joint_threshold;
    showThresholds();
    const inf = info.model.inference;
    const rec = info.model;  // the model record
    $("#model").textContent = `${rec.architecture}-W${rec.width} (${rec.origin}` +
      `${rec.dataset ? ", trained on " + rec.dataset : ""}) · input ` +
      `${inf.input_size}, flip ${inf.flip ? "on" : "off"}`;
  } catch (e) {
    $("#model").textContent = "model not ready: " + e.message;
    setTimeout(loadModel, 1000);
  }
}

async function detect(blob) {
  const r = await fetch("/v1/poses", {
    method: "POST", headers: { "Content-Type": blob.type }, body: blob,
  });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error ? body.error.message : r.statusText);
  return body;
}

function median(values) {
  const v = [...values].sort((a, b) => a - b);
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

// Joints and limbs to draw, as hrpose.viz.draw.drawn_parts: people above the person threshold,
// joints above the joint threshold, limbs up to limbRatio x the person's median limb.
function drawnParts(p, skeleton, personT, jointT, ratio) {
  const kp = p.keypoints;
  const joints = kp.map((k) => p.score >= personT && k[2] >= jointT);
  const pairs = skeleton.map(([a, b]) => joints[a] && joints[b]);
  const length = skeleton.map(([a, b]) => Math.hypot(kp[a][0] - kp[b][0], kp[a][1] - kp[b][1]));
  const candidates = length.filter((_, i) => pairs[i]);
  const med = candidates.length ? median(candidates) : 0;
  const limbs = pairs.map((ok, i) => ok && (!Number.isFinite(ratio) || length[i] <= ratio * med));
  const has = joints.map(() => false);
  const kept = joints.map(() => false);
  skeleton.forEach(([a, b], i) => {
    if (pairs[i]) has[a] = has[b] = true;
    if (limbs[i]) kept[a] = kept[b] = true;
  });
  return { joints: joints.map((j, k) => j && (kept[k] || !has[k])), limbs };
}

function drawPeople() {
  const ctx = overlay.getContext("2d");
  ctx.clearRect(0, 0, overlay.width, overlay.height);
  const result = state.result;
  if (!result) return 0;
  const thick = Math.max(2, Math.round(Math.max(overlay.width, overlay.height) / 300));
  let rank = 0;
  for (const p of result.people) {
    const parts = drawnParts(p, state.skeleton, +person.value, +joint.value, state.limbRatio);
    if (!parts.joints.some(Boolean)) continue;
    const [r, g, b] = PALETTE[rank % PALETTE.length];
    const color = `rgb(${r},${g},${b})`;
    rank += 1;
    ctx.lineCap = "round";
    state.skeleton.forEach(([a, c], i) => {
      if (!parts.limbs[i]) return;
      const pa = p.keypoints[a], pc = p.keypoints[c];
      for (const [style, width] of [["#000", thick + 2], [color, thick]]) {
        ctx.strokeStyle = style; ctx.lineWidth = width;
        ctx.beginPath(); ctx.moveTo(pa[0], pa[1]); ctx.lineTo(pc[0], pc[1]); ctx.stroke();
      }
    });
    p.keypoints.forEach((k, j) => {
      if (!parts.joints[j]) return;
      for (const [style, radius] of [["#000", thick + 2], [color, thick + 1]]) {
        ctx.fillStyle = style;
        ctx.beginPath(); ctx.arc(k[0], k[1], radius, 0, 2 * Math.PI); ctx.fill();
      }
    });
  }
  state.drawnPeople = rank;
  return rank;
}

function showImage(source, width, height) {
  for (const c of [imageCanvas, overlay]) {
    if (c.width !== width || c.height !== height) { c.width = width; c.height = height; }
  }
  imageCanvas.getContext("2d").drawImage(source, 0, 0, width, height);
  $("#stage").hidden = false;
  $("#hint").hidden = true;
}

function summary() {
  const r = state.result;
  const t = r.timing_ms;
  return `${state.drawnPeople} of ${r.people.length} decoded people drawn · ` +
    `${r.image.width}x${r.image.height} · server ${t.total.toFixed(0)} ms`;
}

async function openFile(file) {
  if (!file) return;
  if (state.live) stopWebcam();
  setStatus(`sending ${file.name}…`);
  try {
    const bitmap = await createImageBitmap(file);
    const result = await detect(file);
    showImage(bitmap, bitmap.width, bitmap.height);
    state.result = result;
    drawPeople();
    setStatus(`${file.name}: ${summary()}`);
  } catch (e) {
    setStatus(`${file.name}: ${e.message}`, true);
  }
}

async function startWebcam() {
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (e) {
    setStatus(`webcam: ${e.message}`, true);
    return;
  }
  video.srcObject = stream;
  await video.play();
  state.live = true;
  answers = [];
  $("#webcam").textContent = "Stop webcam";
  $("#webcam").classList.add("live");
  liveLoop();
}

function stopWebcam() {
  state.live = false;
  if (stream) stream.getTracks().forEach((t) => t.stop());
  stream = null;
  $("#webcam").textContent = "Start webcam";
  $("#webcam").classList.remove("live");
}

// Live mode: the next frame goes as soon as the answer to the last one is back.
async function liveLoop() {
  const grab = document.createElement("canvas");
  while (state.live) {
    const w = video.videoWidth, h = video.videoHeight;
    if (!w || !h) { await new Promise((r) => setTimeout(r, 50)); continue; }
    grab.width = w; grab.height = h;
    grab.getContext("2d").drawImage(video, 0, 0, w, h);
    const blob = await new Promise((r) => grab.toBlob(r, "image/jpeg", 0.85));
    let result;
    try {
      result = await detect(blob);
    } catch (e) {
      setStatus(`webcam: ${e.message}`, true);
      await new Promise((r) => setTimeout(r, 500));
      continue;
    }
    if (!state.live) break;
    showImage(grab, w, h);
    state.result = result;
    const drawn = drawPeople();
    state.framesDrawn += 1;
    state.log.push({ frame: state.framesDrawn, people: drawn, decoded: result.people.length });
    if (state.log.length > 100) state.log.shift();
    const now = performance.now();
    answers.push(now);
    answers = answers.filter((t) => now - t < 2000);
    state.fps = answers.length > 1 ? (answers.length - 1) / ((now - answers[0]) / 1000) : 0;
    setStatus(`live: ${state.fps.toFixed(1)} frames/s · ${summary()}`);
  }
}

function showThresholds() {
  $("#person-value").textContent = (+person.value).toFixed(2);
  $("#joint-value").textContent = (+joint.value).toFixed(2);
}

for (const slider of [person, joint]) {
  slider.addEventListener("input", () => {
    showThresholds();
    if (state.result) { drawPeople(); if (!state.live) setStatus(summary()); }
  });
}
$("#file").addEventListener("change", (e) => openFile(e.target.files[0]));
$("#webcam").addEventListener("click", () => (state.live ? stopWebcam() : startWebcam()));
const drop = $("#drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  openFile(e.dataTransfer.files[0]);
});
loadModel();
