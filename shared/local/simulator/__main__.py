"""Run the Azure OpenAI simulator on its own: ``python -m shared.local.simulator --port 8000``."""

import argparse

import uvicorn

from shared.local.simulator.app import create_app


def main() -> None:
    parser = argparse.ArgumentParser(description="Local Azure OpenAI simulator (refuses to run in Azure).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
