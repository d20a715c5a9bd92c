"""The page: one HTML document with its script, no build step and nothing fetched from elsewhere.

Protocol on ``/ws`` (server to browser only): a JSON text message ``{"type": "stats", …}``
with the counters, frame rate and Redis' state; or a JSON ``{"type": "frame", …}`` (entry id,
source, and for hits label, class, score, ms) followed by one binary message with the JPEG.
The script reconnects by itself (0.5 s doubling to 5 s) when the socket closes.
"""

from __future__ import annotations

import html

__all__ = ["FAVICON_SVG", "render_page"]

# The browser asks for /favicon.ico on every page: a small camera lens, served from here.
FAVICON_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect x="1" y="4" width="14" height="10" rx="2" '
    'fill="#fc6"/><circle cx="8" cy="9" r="3.2" fill="#222"/><rect x="5" y="2" width="6" height="3" fill="#fc6"/></svg>'
)

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gearcam: STREAM_NAME</title>
<link rel="icon" href="/favicon.ico" type="image/svg+xml">
<style>
  body { font-family: system-ui, sans-serif; margin: 0; background: #111; color: #eee; }
  header { display: flex; gap: 1.5em; align-items: baseline; padding: .6em 1em; background: #222; flex-wrap: wrap; }
  h1 { font-size: 1.1em; margin: 0; }
  #conn.live { color: #6c6; } #conn.down { color: #e66; }
  main { display: flex; gap: 1em; padding: 1em; flex-wrap: wrap; }
  figure { margin: 0; }
  #frame { max-width: 100%; width: 640px; background: #000; min-height: 120px; display: block; }
  figcaption { padding: .4em 0; font-size: 1.1em; min-height: 1.4em; }
  #label { font-weight: bold; color: #fc6; }
  table { border-collapse: collapse; } td { padding: .15em .8em .15em 0; } td.n { text-align: right; }
  #last_error { color: #e99; max-width: 30em; font-size: .85em; overflow-wrap: anywhere; }
</style>
</head>
<body>
<header>
  <h1>gearcam &middot; <span id="stream">STREAM_NAME</span></h1>
  <span>connection: <b id="conn" class="down">connecting</b></span>
  <span>Redis: <b id="redis">?</b></span>
  <span><b id="fps">0.0</b> frames/s</span>
</header>
<main>
  <figure>
    <img id="frame" alt="waiting for the first frame">
    <figcaption>
      <span id="label"></span> <span id="score"></span> <span id="time"></span> <span id="ms"></span>
    </figcaption>
  </figure>
  <section>
    <table id="counters"><tbody></tbody></table>
    <p id="last_error"></p>
  </section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const STAGES = ["seen", "forwarded", "sampled", "inferred", "hits", "errors"];
let meta = null, shownUrl = null, delay = 500, socket = null;

function showStats(m) {
  $("redis").textContent = m.redis;
  $("fps").textContent = Number(m.fps).toFixed(1);
  const rows = STAGES.map((s) => "<tr><td>" + s + "</td><td class=n id=count_" + s + ">" +
    (m.counters[s] || 0) + "</td></tr>");
  for (const [reason, n] of Object.entries(m.errors || {})) {
    rows.push("<tr><td>&nbsp;&nbsp;" + reason.replace(/[<>&]/g, "") + "</td><td class=n>" + n + "</td></tr>");
  }
  $("counters").tBodies[0].innerHTML = rows.join("");
  $("last_error").textContent = m.counters.last_error ? "last error: " + m.counters.last_error : "";
}

function showFrame(blob) {
  const url = URL.createObjectURL(blob);
  const img = $("frame");
  const previous = shownUrl;
  shownUrl = url;
  img.onload = () => { if (previous) URL.revokeObjectURL(previous); };
  img.src = url;
  const m = meta || {};
  img.dataset.id = m.id || "";
  $("label").textContent = m.label ? m.label + " (class " + m["class"] + ")" : (m.source || "");
  $("score").textContent = m.score ? "score " + Number(m.score).toFixed(2) : "";
  $("time").textContent = m.time_ms ? new Date(m.time_ms).toLocaleTimeString() : "";
  $("ms").textContent = m.ms ? "(" + Number(m.ms).toFixed(0) + " ms)" : "";
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  socket = new WebSocket(scheme + location.host + "/ws");
  socket.binaryType = "blob";
  socket.onopen = () => { delay = 500; $("conn").textContent = "live"; $("conn").className = "live"; };
  socket.onmessage = (event) => {
    if (typeof event.data === "string") {
      const m = JSON.parse(event.data);
      if (m.type === "frame") meta = m; else if (m.type === "stats") showStats(m);
    } else {
      showFrame(event.data);
    }
  };
  socket.onclose = () => {
    $("conn").textContent = "reconnecting"; $("conn").className = "down";
    setTimeout(connect, delay);
    delay = Math.min(delay * 2, 5000);
  };
}
connect();
</script>
</body>
</html>
"""


def render_page(stream: str) -> str:
    """The page for ``stream`` (its name is the only variable part)."""
    return _PAGE.replace("STREAM_NAME", html.escape(stream))
