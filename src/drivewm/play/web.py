"""The web front end: a page on 127.0.0.1 (the standard library's http.server, no external assets) that shows the
current frame as a PNG and posts each key press; the answer to a post is the PNG of the frame it led to.

GET /           the page (HTML and a few lines of JavaScript)
GET /frame.png  the current frame
POST /key       body: one key ('w', 'a', 's', 'd', '.', 'r', an arrow's name, or 'q', which stops the server);
                answer: image/png of the next frame, with the status line in the X-Drivewm-Status header;
                an unknown key: 400 and a line naming it
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from drivewm.play.controls import KEY_HELP, QUIT, key_name
from drivewm.play.render import enlarge, png_bytes
from drivewm.play.session import Session

log = logging.getLogger("drivewm")
_MAX_BODY = 64  # bytes: a key name

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>drivewm play</title>
<style>
body {{ background: #111; color: #ddd; font-family: monospace; text-align: center; }}
img {{ image-rendering: pixelated; width: min(92vw, 768px); border: 1px solid #444; }}
</style></head>
<body>
<h3>drivewm play: {name}</h3>
<img id="frame" src="/frame.png" alt="current frame">
<pre id="status">{status}</pre>
<p>{keys}</p>
<script>
const KEYS = {{ArrowUp: "up", ArrowDown: "down", ArrowLeft: "left", ArrowRight: "right",
  w: "w", a: "a", s: "s", d: "d", ".": ".", r: "r", q: "q"}};
let busy = false;
document.addEventListener("keydown", async (e) => {{
  const key = KEYS[e.key.length === 1 ? e.key.toLowerCase() : e.key];
  if (!key || busy) return;
  e.preventDefault();
  busy = true;
  try {{
    const r = await fetch("/key", {{method: "POST", body: key}});
    const img = document.getElementById("frame"), status = document.getElementById("status");
    if (r.ok && r.headers.get("Content-Type") === "image/png") {{
      const old = img.src;
      img.src = URL.createObjectURL(await r.blob());
      if (old.startsWith("blob:")) URL.revokeObjectURL(old);
      status.textContent = r.headers.get("X-Drivewm-Status") || "";
    }} else {{
      status.textContent = await r.text();
    }}
  }} finally {{ busy = false; }}
}});
</script></body></html>
"""


class PlayServer(ThreadingHTTPServer):
    """An HTTP server of one session on host:port (port 0: any free port); one request drives it at a time."""

    daemon_threads = True

    def __init__(self, session: Session, host: str = "127.0.0.1", port: int = 8765) -> None:
        self.session = session
        self.lock = threading.Lock()
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def frame_png(self) -> bytes:
        return png_bytes(enlarge(self.session.image()))


class _Handler(BaseHTTPRequestHandler):
    server: PlayServer

    def _send(self, code: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _text(self, code: int, text: str) -> None:
        self._send(code, (text + "\n").encode(), "text/plain; charset=utf-8")

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        server = self.server
        if self.path == "/":
            with server.lock:
                page = PAGE.format(name=getattr(server.session.forecaster, "name", "world model"),
                                   status=server.session.status(), keys=KEY_HELP)
            self._send(200, page.encode(), "text/html; charset=utf-8")
        elif self.path == "/frame.png":
            with server.lock:
                png, status = server.frame_png(), server.session.status()
            self._send(200, png, "image/png", {"X-Drivewm-Status": status})
        else:
            self._text(404, f"no page {self.path}; the page is /")

    def do_POST(self) -> None:  # noqa: N802
        server = self.server
        if self.path != "/key":
            self._text(404, f"no endpoint {self.path}; keys go to POST /key")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= _MAX_BODY:
            self._text(400, f"POST /key takes one key name as its body; keys: {KEY_HELP}")
            return
        key = self.rfile.read(length).decode("utf-8", errors="replace").strip()
        name = key_name(key) if key else None
        if name is None:
            self._text(400, f"unknown key {key!r}; keys: {KEY_HELP}")
            return
        if name == QUIT:
            self._text(200, "stopped")
            threading.Thread(target=server.shutdown, daemon=True).start()
            return
        with server.lock:
            server.session.press(name)
            png, status = server.frame_png(), server.session.status()
        self._send(200, png, "image/png", {"X-Drivewm-Status": status})

    def log_message(self, format: str, *args) -> None:  # requests go to the debug log, not over the terminal
        log.debug("play web: " + format, *args)


def serve(session: Session, host: str = "127.0.0.1", port: int = 8765, on_ready=None) -> None:
    """Serve the page until 'q' is posted or Ctrl-C; `on_ready(url)` is called once the port is bound."""
    with PlayServer(session, host, port) as server:
        if on_ready is not None:
            on_ready(server.url)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
