"""A static server for the app on 127.0.0.1 only, on a free port, with the cross-origin isolation
headers WebAssembly threads need (COOP/COEP), that stops by itself after `lifetime` seconds.

    python -m edgecls.apps.web.serve web/digits [--seconds 3600]
"""

from __future__ import annotations

import argparse
import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
           "Cross-Origin-Resource-Policy": "same-origin", "Cache-Control": "no-store"}


def app_csp(root: Path) -> str:
    """The Content-Security-Policy the app in `root` was built with (config.json), else the strict default
    (own files and WebAssembly only). Only a policy of that form is taken from the folder."""
    import json

    from .build import csp

    try:
        policy = json.loads((Path(root) / "config.json").read_text()).get("csp")
    except (OSError, ValueError, AttributeError):
        policy = None
    default = csp()
    if isinstance(policy, str) and policy.startswith(default.split("; ", 2)[0]) and "\n" not in policy \
            and "\r" not in policy and len(policy) < 2000 and all(w not in policy for w in ("*", "http:", "https:")):
        return policy
    return default


class _Handler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                      ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json"}

    def end_headers(self):
        for k, v in HEADERS.items():
            self.send_header(k, v)
        self.send_header("Content-Security-Policy", self.server.csp)
        super().end_headers()

    def log_message(self, *args):  # quiet: the app's own state is what is reported
        pass


class AppServer:
    """`with AppServer(folder) as s: s.url` — serving until the block ends or `lifetime` seconds pass."""

    def __init__(self, root: str | Path, lifetime: float = 900.0):
        self.root = Path(root)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(self.root)))
        self.httpd.daemon_threads = True
        self.httpd.csp = app_csp(self.root)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="edgecls-app-server", daemon=True)
        self._timer = threading.Timer(lifetime, self.close)
        self._timer.daemon = True
        self._closed = False

    def start(self) -> AppServer:
        self._thread.start()
        self._timer.start()
        return self

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._timer.cancel()
            self.httpd.shutdown()
            self.httpd.server_close()

    def __enter__(self) -> AppServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def main() -> None:
    p = argparse.ArgumentParser(description="Serve an edgecls web app on 127.0.0.1 with COOP/COEP headers.")
    p.add_argument("folder")
    p.add_argument("--seconds", type=float, default=3600, help="stop after this many seconds (default 3600)")
    a = p.parse_args()
    server = AppServer(a.folder, a.seconds).start()
    print(f"serving {a.folder} at {server.url} for {a.seconds:g} s (Ctrl-C stops)", flush=True)
    try:
        server._thread.join()
    except KeyboardInterrupt:
        server.close()


if __name__ == "__main__":
    main()
