"""How a CLI is made and run: a service's Typer app with its shared options and commands,
and a run's exit status (one line on stderr for a refusal, 2 for a usage error)."""

import sys
from collections.abc import Sequence
from typing import Annotated

import grpc
import typer

# Typer vendors Click; its exceptions are what a usage error raises.
from typer._click.exceptions import ClickException

from lifeline.cli.errors import EXIT_FAILED, Failure, one_line, pipe_closed, rpc_error, say_error
from lifeline.cli.parked import add_parking_commands
from lifeline.cli.session import Session, hoist_options


def service_app(service: str, description: str) -> typer.Typer:
    """A service's CLI with its shared options and commands: serve, parked, retry-parked,
    discard-parked."""
    app = typer.Typer(name=f"lifeline-{service}", help=description, no_args_is_help=True,
                      rich_markup_mode="rich", pretty_exceptions_enable=False,
                      context_settings={"help_option_names": ["-h", "--help"]},
                      epilog="The options above also go after the command "
                             "(`incidents --json`). Exit status: 0 done, 1 refused or "
                             "failed (one line on stderr), 2 a usage error.")
    upper = service.upper()

    @app.callback()
    def options(
        ctx: typer.Context,
        addr: Annotated[str | None, typer.Option(
            metavar="HOST:PORT", help=f"{service}'s gRPC address (default: "
            f"LIFELINE_{upper}_ADDR, else what `lifeline up` recorded)")] = None,
        as_json: Annotated[bool, typer.Option(
            "--json", help="print the API's answer in protobuf's canonical JSON (a list as "
            "a JSON array; times in UTC)")] = False,
        ndjson: Annotated[bool, typer.Option(
            "--ndjson", help="lists and live views: one JSON object a line, as they come")
        ] = False,
        token: Annotated[str | None, typer.Option(
            metavar="TOKEN", help="bearer token (default: LIFELINE_TOKEN, else the token "
            "`lifeline up` wrote); you are recorded as its subject")] = None,
        ca: Annotated[str | None, typer.Option(
            metavar="FILE", help="CA certificate to trust (default: LIFELINE_TLS_CA, else "
            "the CA `lifeline up` made)")] = None,
        tz: Annotated[str | None, typer.Option(
            metavar="ZONE", help="time zone field times are shown in, and times given "
            "without a zone are read in, e.g. Asia/Shanghai (default: LIFELINE_TIMEZONE, "
            "else UTC)")] = None,
    ) -> None:
        given = {"addr": addr, "json": as_json, "ndjson": ndjson, "token": token, "ca": ca,
                 "tz": tz}
        held = ctx.ensure_object(Session).options
        for name, value in given.items():
            if value:
                setattr(held, name, value)

    @app.command(help=f"Run the {service} service (configured by its environment; see "
                      "docs/configuration.md).")
    def serve() -> None:
        from importlib import import_module

        from lifeline.runtime import serve_forever

        bootstrap = import_module(f"lifeline_{service}.bootstrap")
        serve_forever(service, bootstrap.build)

    add_parking_commands(app, service)
    return app


def run(app: typer.Typer, service: str, argv: Sequence[str] | None = None) -> None:
    """Run a CLI (a service's, or `lifeline` itself when service is ""): one line on stderr
    and exit 1 when the service refuses or something fails, exit 2 with one line for a
    usage error, quiet when the reader of stdout goes away."""
    prog = f"lifeline-{service}" if service else "lifeline"
    args = list(sys.argv[1:] if argv is None else argv)
    code = 0
    session = Session()
    try:
        command = typer.main.get_command(app)
        # The run's state lives on Typer's context (`ctx.obj`), for its commands to find.
        code = command.main(hoist_options(args) if service else args, prog_name=prog,
                            standalone_mode=False, obj=session) or 0
    except ClickException as error:
        where = error.ctx.command_path if getattr(error, "ctx", None) else prog  # type: ignore[attr-defined]
        say_error(f"{where}: {one_line(error.format_message())} (--help for usage)")
        code = error.exit_code
    except Failure as error:
        say_error(f"{prog}: {one_line(str(error))}")
        code = EXIT_FAILED
    except grpc.RpcError as error:
        say_error(f"{prog}: {rpc_error(error, service, session.address)}")
        code = EXIT_FAILED
    except BrokenPipeError:
        code = pipe_closed()
    except (OSError, RuntimeError) as error:  # a file that cannot be written, a stack that
        say_error(f"{prog}: {one_line(str(error)) or type(error).__name__}")  # will not start
        code = EXIT_FAILED
    except KeyboardInterrupt:
        code = 130
    finally:
        session.close()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = pipe_closed()
    if code:
        raise SystemExit(code)
