"""A viewer server running in this process (a thread), so coverage sees the server's code
while a real client (a browser, a WebSocket) talks to it over loopback."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager


@contextmanager
def live_server(hub, port: int = 0):
    """Serve `hub` on a loopback port (0: a free one) from a thread; yields the page's URL."""
    from townlet_agents.watch import listen, make_server

    sock = listen("127.0.0.1", port)
    server = make_server(hub)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the viewer server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
