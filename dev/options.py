"""The command lines of dev/demo.py and dev/stack.py, with the standard library only, so that
dev/demo.sh and dev/stack.sh check them with the machine's python3 before any setup:

    python3 dev/options.py demo|stack ARGS...

prints "ok" when ARGS are valid, the help when they ask for it, and exits 2 with argparse's
message when they are not."""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

DEV = Path(__file__).resolve().parent
sys.path.insert(0, str(DEV.parent))

from dev.servers import PG_VERSIONS  # noqa: E402 - standard library only


def docstring(script: str) -> str:
    """The docstring of dev/<script>, read without importing it (it needs the .venv)."""
    return ast.get_docstring(ast.parse((DEV / script).read_text()), clean=False) or ""


def demo_options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bash dev/demo.sh",
        description=docstring("demo.py").splitlines()[0],
        allow_abbrev=False,  # demo.sh reads the options whole to choose what to set up
    )
    parser.add_argument(
        "--engine",
        choices=("postgres", "mariadb"),
        default="postgres",
        help="database engine to run (default postgres)",
    )
    parser.add_argument(
        "--pg-major",
        type=int,
        choices=sorted(PG_VERSIONS),
        metavar="{14..18}",
        help="PostgreSQL major version to run (default 16; only with --engine postgres)",
    )
    args = parser.parse_args(argv)
    if args.engine == "mariadb" and args.pg_major is not None:
        parser.error("--pg-major applies only to --engine postgres")
    return args


def stack_options(argv: list[str] | None = None) -> argparse.Namespace:
    doc = docstring("stack.py")
    parser = argparse.ArgumentParser(
        prog="bash dev/stack.sh",
        allow_abbrev=False,  # stack.sh reads the options whole to choose what to set up
        description=doc.split("\n\n")[0],
        epilog=doc.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the stack (or what of it is not running)")
    up.add_argument(
        "--pg",
        type=int,
        default=16,
        choices=sorted(PG_VERSIONS),
        metavar="N",
        help="PostgreSQL major, 14 to 18 (default 16)",
    )
    up.add_argument("--mariadb", action="store_true", help="also start MariaDB")
    commands.add_parser("down", help="stop everything and delete its data")
    commands.add_parser("status", help="what runs, where")
    env = commands.add_parser("env", help="print the environment to export")
    env.add_argument("--mariadb", action="store_true", help="MariaDB's moto and rotation ARNs")
    run = commands.add_parser("run", help="run the handler on an event against the stack")
    run.add_argument("event", help="an event file, e.g. lambda-invocation/seed-example.json")
    run.add_argument("handler_args", nargs=argparse.REMAINDER, help="e.g. --dry-run")
    return parser.parse_args(argv)


if __name__ == "__main__":
    {"demo": demo_options, "stack": stack_options}[sys.argv[1]](sys.argv[2:])
    print("ok")
