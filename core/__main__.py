"""Winnow's command line: `python -m core <step> ...`, one sub-command per step (`--help` on each).

Errors a user can fix print one line, `winnow: error: <message>`, and exit 2; a traceback only with --debug.
With --job ID (set by core.jobs), the step records its status, progress and result in the workspace.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import traceback
import warnings
from typing import Sequence

from core import __version__
from core.errors import Cancelled, WinnowError, WinnowWarning, user_warning

# Every module here has register(subparsers); each sub-command sets func=cmd(args, ws) -> int.
COMMAND_MODULES = ("core.cli.data", "core.cli.value", "core.cli.select", "core.cli.finetune", "core.cli.project",
                   "core.cli.first_run")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m core",
        description="Winnow: find the harmful, redundant and mislabelled rows of a labelled text dataset, "
                    "select a better subset, prove it with a fine-tune, and export it.",
        epilog="DATA is a file (.csv .tsv .json .jsonl .parquet), a `datasets` folder, a hub dataset name, "
               "`demo` (the built-in tweets), `sst2`, or ws:ID (a dataset already in the workspace).")
    p.add_argument("--workspace", metavar="DIR", default=None,
                   help="workspace folder (default: $WINNOW_HOME, else ./workspace)")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.add_argument("--job", metavar="ID", default=None, help=argparse.SUPPRESS)
    p.add_argument("--version", action="version", version=f"winnow {__version__}")
    sub = p.add_subparsers(dest="command", metavar="<step>")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return p


_shown: set[str] = set()


def _show_warning(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
    """Winnow's warnings, and library warnings reworded for users, as one `winnow: warning:` line each (once)."""
    text = user_warning(message, category)
    if text is None:
        _default_showwarning(message, category, filename, lineno, file, line)
        return
    if not issubclass(category, WinnowWarning):
        if text in _shown:
            return  # a library warning repeated in a loop is said once
        _shown.add(text)
    print(f"winnow: warning: {_one_line(text)}", file=sys.stderr)


_default_showwarning = warnings.showwarning


def _one_line(msg: str) -> str:
    """A message on one line: line breaks (e.g. quoted from a column name) shown as \\n."""
    return msg.replace("\r", "\\r").replace("\n", "\\n")


def main(argv: Sequence[str] | None = None) -> int:
    warnings.showwarning = _show_warning
    _shown.clear()
    parser = build_parser()
    args = parser.parse_args(argv)
    from core import jobs
    from core.workspace import Workspace

    ws = None
    try:
        ws = Workspace(args.workspace)
        if args.job:
            jobs.mark_running(ws, args.job)

            def _on_term(signum: int, frame: object) -> None:
                raise Cancelled()

            signal.signal(signal.SIGTERM, _on_term)
        rc = int(args.func(args, ws) or 0)
        if args.job:
            jobs.finish(ws, args.job, "done" if rc == 0 else "failed", "finished" if rc == 0 else f"exit {rc}")
        return rc
    except Cancelled:
        if ws is not None and args.job:
            jobs.finish(ws, args.job, "cancelled", "cancelled")
        print("winnow: cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        if ws is not None and args.job:
            jobs.finish(ws, args.job, "cancelled", "interrupted")
        print("winnow: interrupted", file=sys.stderr)
        return 130
    except WinnowError as e:
        if ws is not None and args.job:
            jobs.finish(ws, args.job, "failed", str(e), error=str(e))
        if args.debug:
            traceback.print_exc()
        print(f"winnow: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except Exception as e:  # a bug: keep its traceback
        if ws is not None and args.job:
            jobs.finish(ws, args.job, "failed", f"internal error: {type(e).__name__}: {e}",
                        error=traceback.format_exc())
        raise


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
