"""The timeline's HTML page: one file with its data (base64) and script inline, no network, no libraries."""

from __future__ import annotations

import base64
import html
import json

import numpy as np

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>EIE run: __TITLE__</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.25em; } table { border-collapse: collapse; margin-bottom: 1em; }
td, th { padding: 2px 10px; border-bottom: 1px solid #ddd; text-align: left; }
canvas { width: 100%; image-rendering: pixelated; border: 1px solid #aaa; display: block; }
.legend span { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 14px; vertical-align: middle; }
#tip { position: fixed; pointer-events: none; background: #fff; border: 1px solid #888; padding: 4px 6px;
       font-size: 12px; display: none; white-space: pre; }
</style></head>
<body>
<h1>EIE run: __TITLE__</h1>
<table id="summary"></table>
<h2>Per PE over time <small class="legend" id="legend"></small></h2>
<canvas id="state"></canvas>
<h2>Activation queue occupancy <small id="scale"></small></h2>
<canvas id="queue"></canvas>
<p id="status">rendering...</p>
<div id="tip"></div>
<script>
"use strict";
const DATA = __DATA__;
function bytes(b64) { const s = atob(b64); const a = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) a[i] = s.charCodeAt(i); return a; }
function viridis(t) {  // five stops of matplotlib's viridis, linearly interpolated
  const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const x = Math.min(Math.max(t, 0), 1) * 4, i = Math.min(Math.floor(x), 3), f = x - i;
  return stops[i].map((v, k) => Math.round(v + f * (stops[i + 1][k] - v))); }
function draw(canvas, rgbOf) {
  canvas.width = DATA.bins; canvas.height = DATA.n_pe;
  canvas.style.height = Math.max(120, Math.min(6 * DATA.n_pe, 600)) + "px";
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(DATA.bins, DATA.n_pe);
  for (let p = 0; p < DATA.n_pe; p++) for (let b = 0; b < DATA.bins; b++) {
    const rgb = rgbOf(p, b), o = 4 * (p * DATA.bins + b);
    img.data[o] = rgb[0]; img.data[o + 1] = rgb[1]; img.data[o + 2] = rgb[2]; img.data[o + 3] = 255; }
  ctx.putImageData(img, 0, 0); }
try {
  const shares = bytes(DATA.shares), occ = bytes(DATA.occupancy), C = DATA.colours;
  const share = (p, b, c) => shares[3 * (p * DATA.bins + b) + c] / 255;
  const queued = (p, b) => occ[p * DATA.bins + b] / 255 * DATA.occupancy_max;
  const summary = document.getElementById("summary");
  for (const [k, v] of Object.entries(DATA.summary)) {
    const row = summary.insertRow(); row.insertCell().textContent = k; row.insertCell().textContent = v; }
  document.getElementById("legend").innerHTML = DATA.classes.map((c, i) =>
    `<span style="background: rgb(${C[i].map(v => Math.round(255 * v)).join(",")})"></span>${c}`).join("");
  document.getElementById("scale").textContent =
    `(0 to ${DATA.occupancy_max.toFixed(1)} activations; ${DATA.width} cycle(s) per pixel)`;
  draw(document.getElementById("state"), (p, b) => [0, 1, 2].map(k =>
    Math.round(255 * C.reduce((s, col, c) => s + share(p, b, c) * col[k], 0))));
  draw(document.getElementById("queue"), (p, b) => viridis(queued(p, b) / Math.max(DATA.occupancy_max, 1e-9)));
  const tip = document.getElementById("tip");
  for (const id of ["state", "queue"]) {
    const cv = document.getElementById(id);
    cv.addEventListener("mousemove", e => {
      const r = cv.getBoundingClientRect();
      const b = Math.min(DATA.bins - 1, Math.floor((e.clientX - r.left) / r.width * DATA.bins));
      const p = Math.min(DATA.n_pe - 1, Math.floor((e.clientY - r.top) / r.height * DATA.n_pe));
      const c0 = b * DATA.width, c1 = Math.min(DATA.cycles, c0 + DATA.width) - 1;
      tip.textContent = `PE ${p}, cycle${c1 > c0 ? "s " + c0 + "-" + c1 : " " + c0}\\n` +
        DATA.classes.map((c, i) => `${c}: ${Math.round(100 * share(p, b, i))}%`).join("  ") +
        `\\nqueued: ${queued(p, b).toFixed(2)}`;
      tip.style.left = (e.clientX + 12) + "px"; tip.style.top = (e.clientY + 12) + "px";
      tip.style.display = "block"; });
    cv.addEventListener("mouseleave", () => { tip.style.display = "none"; }); }
  document.body.dataset.status = "rendered";
  document.getElementById("status").textContent =
    `rendered ${DATA.n_pe} PEs x ${DATA.cycles} cycles (${DATA.bins} columns)`;
} catch (err) {
  document.body.dataset.status = "error";
  document.getElementById("status").textContent = "error: " + err;
}
</script></body></html>
"""


def render_html(summary: dict, shares: np.ndarray, occupancy: np.ndarray, width: int, colours: np.ndarray) -> str:
    """The page for binned ``shares`` (n_pe, bins, 3) and mean ``occupancy`` (n_pe, bins)."""
    n_pe, bins, _ = shares.shape
    top = float(occupancy.max(initial=0.0))
    data = {
        "summary": summary, "n_pe": n_pe, "bins": bins, "width": width, "cycles": int(summary["cycles"]),
        "classes": ["busy", "stalled", "starved"], "colours": np.asarray(colours).round(4).tolist(),
        "shares": base64.b64encode(np.rint(shares * 255).astype(np.uint8).tobytes()).decode(),
        "occupancy": base64.b64encode(np.rint(occupancy / max(top, 1e-9) * 255).astype(np.uint8).tobytes()).decode(),
        "occupancy_max": top,
    }
    title = html.escape(f"{summary['layer']} on {summary['n_pe']} PEs, FIFO {summary['fifo_depth']}")
    # "</" cannot appear inside the inline script's JSON
    return _PAGE.replace("__TITLE__", title).replace("__DATA__", json.dumps(data).replace("</", "<\\/"))
