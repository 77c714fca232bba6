"""``quantlens app`` and ``quantlens edit``: serve the marimo app, read-only or in the editor."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import secrets
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from quantlens.app.config import notebook_arguments
from quantlens.cli.inspect_commands import TRUST_HELP
from quantlens.cli.run_commands import DATA_DIR_HELP
from quantlens.errors import DatasetNotFoundError, InputError, ModelNotFoundError

NOTEBOOK = Path(__file__).resolve().parents[1] / "app" / "notebook.py"
DEFAULT_HOST = "127.0.0.1"
MODELS_HELP = (
    "model files, or folders whose model files (.onnx, .pt, ...) are listed; the app lists these "
    "and the bundled models, and opens nothing else"
)


@dataclass(frozen=True)
class ServerPlan:
    """The marimo command to run, the token to write to its stdin, and the URL it serves.

    The token goes through stdin (``--token-password-file -``) so that it does not show in the
    process list; the URL carries it as ``?access_token=``.
    """

    command: list[str]
    url: str
    token: str | None = None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``app`` and ``edit`` to ``subparsers``."""
    app = subparsers.add_parser(
        "app",
        help="serve the app in the browser (read-only)",
        description="Serve the quantlens app with `marimo run` (headless, read-only) and print its URL.",
    )
    _add_server_options(app)
    app.set_defaults(handler=run_app)

    edit = subparsers.add_parser(
        "edit",
        help="open the app in marimo's editor",
        description="Open the quantlens notebook in marimo's editor, to change or extend its cells.",
    )
    _add_server_options(edit)
    edit.add_argument("--headless", action="store_true", help="do not open a browser window")
    edit.set_defaults(handler=run_edit)


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="*", metavar="MODEL_OR_DIR", help=MODELS_HELP)
    parser.add_argument("--data-dir", help=DATA_DIR_HELP)
    parser.add_argument("--trust", action="store_true", help=TRUST_HELP)
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address to listen on (default: %(default)s); any address other than loopback "
        "requires an access token, which is generated unless --token-password is given",
    )
    parser.add_argument("--port", type=port_number, help="TCP port to listen on, 1-65535 (default: a free port)")
    parser.add_argument(
        "--token-password",
        help="access token that viewers pass as ?access_token=...; setting it also protects a loopback server",
    )


def run_app(args: argparse.Namespace) -> int:
    return _serve("run", args, headless=True)


def run_edit(args: argparse.Namespace) -> int:
    return _serve("edit", args, headless=args.headless)


def _serve(mode: str, args: argparse.Namespace, *, headless: bool) -> int:
    check_paths(args.models, args.data_dir)
    port = args.port if args.port is not None else free_port(args.host)
    check_port(args.host, port)
    plan = plan_server(
        mode,
        host=args.host,
        port=port,
        token=args.token_password,
        headless=headless,
        arguments=notebook_arguments(args.models, data_dir=args.data_dir, trust=args.trust),
    )
    print(f"quantlens {'app' if mode == 'run' else 'edit'}: serving {plan.url} (Ctrl+C stops it)", flush=True)
    environment = {**os.environ, "MARIMO_SKIP_UPDATE_CHECK": "1"}
    server = subprocess.Popen(plan.command, env=environment, stdin=subprocess.PIPE if plan.token else None)
    if plan.token is not None and server.stdin is not None:
        server.stdin.write(plan.token.encode("utf-8"))
        server.stdin.close()
    # SIGTERM to this process would otherwise leave the marimo server running.
    signal.signal(signal.SIGTERM, lambda signum, frame: server.terminate())
    try:
        return server.wait()
    except KeyboardInterrupt:
        server.terminate()
        server.wait(timeout=10)
        return 130


def plan_server(
    mode: str, *, host: str, port: int, token: str | None, headless: bool, arguments: list[str]
) -> ServerPlan:
    """Build the ``marimo run``/``marimo edit`` command line for the notebook.

    The editor and any host other than loopback always get a token, a random one unless
    ``token`` is given, and the URL carries it. ``marimo run`` on loopback without ``token`` runs
    with ``--no-token``, so its URL needs none.
    """
    if mode not in ("run", "edit"):
        raise ValueError(f"mode must be 'run' or 'edit', got {mode!r}")
    if token is None and (mode == "edit" or not is_loopback(host)):
        token = secrets.token_urlsafe(24)
    # The read-only server preloads the app's imports, because its sessions share one process.
    launcher = "quantlens.app.serve" if mode == "run" else "marimo"
    command = [sys.executable, "-m", launcher, mode, str(NOTEBOOK), "--host", host, "--port", str(port)]
    if headless:
        command.append("--headless")
    if mode == "edit":
        command.append("--skip-update-check")
    if token is not None:
        command += ["--token", "--token-password-file", "-"]
    else:
        command.append("--no-token")
    command += ["--", *arguments]
    url_host = f"[{host}]" if ":" in host else host
    url = f"http://{url_host}:{port}/" + (f"?access_token={token}" if token is not None else "")
    return ServerPlan(command=command, url=url, token=token)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def port_number(text: str) -> int:
    """Parse a --port value: a number from 1 to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: use a number from 1 to 65535") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {port}: use a number from 1 to 65535")
    return port


def check_port(host: str, port: int) -> None:
    """Raise InputError when the server could not listen on ``host``:``port`` now."""
    with socket.socket(_address_family(host), socket.SOCK_STREAM) as probe:
        # uvicorn sets SO_REUSEADDR too, so a port that only lingers after a closed connection is
        # free for it.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            reason = "another program is listening there" if error.errno == errno.EADDRINUSE else error.strerror
            raise InputError(
                f"failed to listen on {host}:{port}: {reason}; pick another --port, or leave --port out "
                "to use a free one"
            ) from error


def _address_family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port(host: str) -> int:
    """Return a TCP port that is free on ``host`` now (another process may take it later)."""
    with socket.socket(_address_family(host), socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def check_paths(models: list[str], data_dir: str | None) -> None:
    """Raise a not-found error for a model path or data folder that does not exist."""
    for model in models:
        if not Path(model).expanduser().exists():
            raise ModelNotFoundError(f"model file or folder not found: {model!r}")
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise DatasetNotFoundError(f"CIFAR-10 folder not found: {data_dir!r}; pass an existing --data-dir")
