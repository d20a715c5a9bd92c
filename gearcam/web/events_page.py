"""The events page: one HTML document with its script; the list comes from /events.json, news over /ws."""

from __future__ import annotations

__all__ = ["EVENTS_PAGE"]

EVENTS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gearcam: events</title>
<link rel="icon" href="/favicon.ico" type="image/svg+xml">
<style>
  body { font-family: system-ui, sans-serif; margin: 0; background: #111; color: #eee; }
  header { display: flex; gap: 1.5em; align-items: baseline; padding: .6em 1em; background: #222; flex-wrap: wrap; }
  h1 { font-size: 1.1em; margin: 0; } a { color: #fc6; }
  #conn.live { color: #6c6; } #conn.down { color: #e66; }
  main { display: flex; gap: 1em; padding: 1em; flex-wrap: wrap; align-items: flex-start; }
  table { border-collapse: collapse; } td, th { padding: .3em .8em .3em 0; text-align: left; }
  tr.event { cursor: pointer; } tr.event:hover { background: #222; }
  img.thumb { width: 120px; height: 90px; object-fit: cover; background: #000; display: block; }
  #player { width: 640px; max-width: 100%; background: #000; }
</style>
</head>
<body>
<header>
  <h1>gearcam &middot; events</h1> <a href="/">live</a>
  <label>camera <select id="camera"><option value="">all</option></select></label>
  <label>label <select id="label"><option value="">all</option></select></label>
  <span>connection: <b id="conn" class="down">connecting</b></span>
</header>
<main>
  <table id="events"><thead><tr><th></th><th>label</th><th>camera</th><th>start</th><th>score</th>
    <th>duration</th><th>clip</th></tr></thead><tbody></tbody></table>
  <figure><video id="player" controls muted playsinline></video><figcaption id="playing"></figcaption></figure>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
let delay = 500;

function fillSelect(select, values) {
  const current = select.value;
  select.innerHTML = '<option value="">all</option>' +
    values.map((v) => '<option value="' + esc(v) + '">' + esc(v) + "</option>").join("");
  select.value = values.includes(current) ? current : "";
}

async function load() {
  const query = new URLSearchParams({camera: $("camera").value, label: $("label").value});
  const reply = await fetch("/events.json?" + query, {credentials: "same-origin"});
  const data = await reply.json();
  fillSelect($("camera"), data.cameras);
  fillSelect($("label"), data.labels);
  $("events").tBodies[0].innerHTML = data.events.map((e) =>
    '<tr class="event" data-id="' + esc(e.id) + '" data-clip="' + (e.clip ? esc(e.clip_url) : "") + '">' +
    '<td><img class="thumb" alt="snapshot" src="' + esc(e.snapshot_url) + '"></td>' +
    "<td>" + esc(e.label) + "</td><td>" + esc(e.camera) + "</td>" +
    "<td>" + new Date(e.start).toLocaleString() + "</td>" +
    "<td class=score>" + Number(e.score).toFixed(2) + "</td>" +
    "<td>" + (e.duration_s === null ? "ongoing" : Number(e.duration_s).toFixed(1) + " s") + "</td>" +
    "<td>" + (e.clip ? "&#9654; play" : (e.type === "end" ? "recording" : "")) + "</td></tr>").join("");
}

function play(row) {
  if (!row || !row.dataset.clip) return;
  const video = $("player");
  video.src = row.dataset.clip;
  video.dataset.id = row.dataset.id;
  $("playing").textContent = row.dataset.id;
  video.play().catch(() => {});
}

$("events").addEventListener("click", (event) => play(event.target.closest("tr.event")));
$("camera").addEventListener("change", load);
$("label").addEventListener("change", load);

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const socket = new WebSocket(scheme + location.host + "/ws?frames=0");
  socket.onopen = () => { delay = 500; $("conn").textContent = "live"; $("conn").className = "live"; load(); };
  socket.onmessage = (event) => {
    if (typeof event.data === "string" && JSON.parse(event.data).type === "event") load();
  };
  socket.onclose = () => {
    $("conn").textContent = "reconnecting"; $("conn").className = "down";
    setTimeout(connect, delay);
    delay = Math.min(delay * 2, 5000);
  };
}
load();
connect();
</script>
</body>
</html>
"""
