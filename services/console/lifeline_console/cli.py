"""`lifeline-console serve`: the console's one command."""

from __future__ import annotations

import logging
import sys

import typer
import uvicorn
from lifeline import settings

app = typer.Typer(help="The web console: the city's live picture for a command centre.",
                  no_args_is_help=True, add_completion=False)


@app.callback()
def console() -> None:
    """The web console."""


@app.command(help="Serve the console (configured by LIFELINE_* variables; see docs/console.md).")
def serve() -> None:
    from lifeline_console.app import create_app

    env = settings.load()
    if not (env.tls_cert and env.tls_key):
        raise SystemExit("lifeline-console: LIFELINE_TLS_CERT and LIFELINE_TLS_KEY: the console "
                         "serves HTTPS only; give its certificate and key")
    try:
        web = create_app(env)
    except (OSError, ValueError) as problem:
        raise SystemExit(f"lifeline-console: {problem}") from None
    host, _, port = env.console_listen.rpartition(":")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(f"console serving on https://{host}:{port}", flush=True)
    uvicorn.run(web, host=host, port=int(port), ssl_certfile=env.tls_cert,
                ssl_keyfile=env.tls_key, log_level="warning", proxy_headers=False)


def main() -> None:
    app()
