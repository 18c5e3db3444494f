"""Run the simulator inside this process, on a loopback port, for local runs without AZURE_OPENAI_ENDPOINT."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from shared.local.simulator.app import create_app


class EmbeddedSimulator:
    """The simulator on its own thread and event loop, so the gateway reaches it over real HTTP."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = create_app()  # refuses in Azure before anything listens
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.url = f"http://{host}:{self._socket.getsockname()[1]}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="aoai-simulator", daemon=True
        )

    def start(self, timeout: float = 10.0) -> EmbeddedSimulator:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the embedded Azure OpenAI simulator did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
