"""Serve a built site folder over HTTP (read-only, the standard library's file server)."""

from __future__ import annotations

import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from refusalscope.errors import UserError


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def static_server(folder: Path, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server for the files under `folder` (port 0: a free one).

    Example:
        server = static_server(Path("site"))
        server.serve_forever()
    """
    handler = functools.partial(_Quiet, directory=str(folder))
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror}; pass another --port"
                        ) from None
