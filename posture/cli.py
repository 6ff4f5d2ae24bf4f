"""Shared command-line plumbing: logging set-up, the "one clear line, never a traceback" rule,
and options generated from configuration dataclasses.

Every ``python -m posture.X`` module keeps its ``main(argv)`` thin and raises :class:`UserError`
for anything the user can fix (bad path, unknown model, wrong data); :func:`run_main` turns that
into a single ``error: ...`` line and exit code 2. A command's options are the fields of its
config dataclass marked with :func:`option` (help, flag, choices, how to parse); :func:`add_options`
turns them into ``argparse`` arguments and :func:`config_from_args` back into the config, whose
``__post_init__`` validates it. Why not tyro or jsonargparse: the helper is ~100 lines over
argparse, keeps ``--help`` and the exit codes exactly as users know them, and adds no dependency
to a package whose ingest workers import this module.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger("posture")
T = TypeVar("T")


class UserError(Exception):
    """A problem with the user's input or environment, reported as one line without a traceback."""


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Configure the root logger once per process for CLI use (tests leave logging alone)."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 0 else logging.INFO)
    logging.basicConfig(
        level=level,
        format="%(message)s" if level > logging.DEBUG else "%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def add_logging_flags(parser: argparse.ArgumentParser) -> None:
    """The same ``-v`` / ``-q`` flags on every command."""
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more detail in the log")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run a CLI ``main`` and map user errors and Ctrl-C to exit codes instead of tracebacks."""
    try:
        return int(main(argv) or 0)
    except UserError as exc:
        log.error("error: %s", exc)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (``posture.predict ... | head``): stop quietly, as command-line tools do.
        # Point stdout at /dev/null so the interpreter's last flush does not raise the same error again.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a pipe closed under a writer


# --------------------------------------------------------------------------- options from dataclasses

#: The field-metadata key under which :func:`option` stores a field's command-line form.
OPTION_KEY = "posture.cli"


@dataclass(frozen=True)
class Option:
    """How one configuration field appears on the command line (see :func:`option`)."""

    help: str
    flag: str | None = None
    aliases: tuple[str, ...] = ()
    positional: bool = False
    metavar: str | tuple[str, ...] | None = None
    choices: tuple[Any, ...] | None = None
    parse: Callable[[str], Any] | None = None
    nargs: int | str | None = None
    repeat: bool = False
    default_text: str | None = None
    required: bool = True


def option(
    help: str,
    *,
    flag: str | None = None,
    aliases: Sequence[str] = (),
    positional: bool = False,
    metavar: str | tuple[str, ...] | None = None,
    choices: Sequence[Any] | None = None,
    parse: Callable[[str], Any] | None = None,
    nargs: int | str | None = None,
    repeat: bool = False,
    default_text: str | None = None,
    required: bool = True,
) -> dict[str, Option]:
    """Field metadata that puts a config field on the command line: ``field(metadata=option(...))``.

    Why: each option is then written once, beside the field it fills, and :func:`add_options`
    builds the parser from the dataclass, so the CLI, a test and a notebook cannot drift apart.
    ``flag`` defaults to ``--field-name`` (``--no-field-name`` for a bool that defaults to True);
    the value's type comes from the annotation unless ``parse`` converts it; ``(default: ...)`` is
    appended to ``help`` unless the default is ``None`` or a flag's ``False`` (``default_text``
    overrides how it reads). ``repeat``: the option may be given several times (a list).
    ``required=False``: a field without a default may still be left off the command line, for a
    command with another mode that does not need it (``posture.evaluate --compare``); the command
    then checks it before building the config.
    """
    return {
        OPTION_KEY: Option(
            help=help,
            flag=flag,
            aliases=tuple(aliases),
            positional=positional,
            metavar=metavar,
            choices=tuple(choices) if choices is not None else None,
            parse=parse,
            nargs=nargs,
            repeat=repeat,
            default_text=default_text,
            required=required,
        )
    }


def cli_fields(cls: type) -> list[tuple[dataclasses.Field[Any], Option]]:
    """The fields of dataclass ``cls`` that carry an :func:`option`, in declaration order."""
    return [(f, f.metadata[OPTION_KEY]) for f in dataclasses.fields(cls) if OPTION_KEY in f.metadata]


def add_options(parser: argparse.ArgumentParser, cls: type) -> argparse.ArgumentParser:
    """Add one argument per :func:`option` field of ``cls`` (see there); returns ``parser``."""
    hints = typing.get_type_hints(cls)
    for f, opt in cli_fields(cls):
        default = _field_default(f)
        kind = _value_type(hints[f.name])
        kwargs: dict[str, Any] = {"help": _help_text(opt, default, kind)}
        if kind is bool and not opt.positional:
            names = [opt.flag or ("--no-" if default is True else "--") + f.name.replace("_", "-"), *opt.aliases]
            parser.add_argument(
                *names, dest=f.name, action="store_false" if default is True else "store_true", **kwargs
            )
            continue
        convert = opt.parse or _element_type(hints[f.name], kind)
        if convert is not None:
            kwargs["type"] = convert
        if opt.choices is not None:
            kwargs["choices"] = opt.choices
        if opt.metavar is not None:
            kwargs["metavar"] = opt.metavar
        elif opt.flag is not None:  # name the value after the flag, not the field (--run RUN, not RUN_DIR)
            kwargs["metavar"] = opt.flag.lstrip("-").replace("-", "_").upper()
        # A ``parse`` function reads the whole value from one string (``--ratios 0.7,0.15,0.15``).
        nargs = opt.nargs if opt.nargs is not None or opt.parse else _tuple_length(hints[f.name], opt)
        if nargs is not None:
            kwargs["nargs"] = nargs
        if opt.repeat:
            kwargs["action"] = "append"
        if opt.positional:
            parser.add_argument(f.name, **kwargs)
            continue
        names = [opt.flag or "--" + f.name.replace("_", "-"), *opt.aliases]
        if default is dataclasses.MISSING:
            parser.add_argument(*names, dest=f.name, required=opt.required, **kwargs)
        else:
            parser.add_argument(*names, dest=f.name, default=[] if opt.repeat else default, **kwargs)
    return parser


def config_from_args(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """An instance of ``cls`` from the parsed ``args`` of its :func:`option` fields (its
    ``__post_init__`` validates it: a mistake is a :class:`UserError`, one line and exit 2)."""
    hints = typing.get_type_hints(cls)
    values = {f.name: getattr(args, f.name) for f, _ in cli_fields(cls) if hasattr(args, f.name)}
    for name, value in values.items():  # argparse collects nargs and repeated options in lists
        if isinstance(value, list) and _value_type(hints[name]) is tuple:
            values[name] = tuple(value)
    values.update(overrides)
    return cls(**values)


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _value_type(hint: Any) -> Any:
    """``X`` from ``X``, ``X | None`` or ``Optional[X]``; the origin of a generic (``tuple``)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        hint = args[0]
    return typing.get_origin(hint) or hint


def _element_type(hint: Any, kind: Any) -> Callable[[str], Any] | None:
    """The converter argparse applies to each string: the field's type, or a tuple's element type."""
    if kind in (tuple, list):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        if inner and typing.get_origin(inner[0]) in (tuple, list):
            inner = list(typing.get_args(inner[0]))
        element = inner[0] if inner else str
        return element if element in (int, float, str, Path) else None
    return kind if kind in (int, float, Path) else None


def _tuple_length(hint: Any, opt: Option) -> int | str | None:
    """``tuple[int, int]`` takes two values; ``tuple[X, ...]`` any number (unless repeated)."""
    if opt.repeat:
        return None
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        hint = args[0]
    if typing.get_origin(hint) is not tuple:
        return None
    inner = typing.get_args(hint)
    return "+" if len(inner) == 2 and inner[1] is Ellipsis else len(inner)


def _help_text(opt: Option, default: Any, kind: Any) -> str:
    if opt.default_text is not None:
        return f"{opt.help} (default: {opt.default_text})"
    if default is dataclasses.MISSING or default is None or kind is bool or opt.repeat:
        return opt.help
    if isinstance(default, (tuple, list)) and not default:  # nothing to show
        return opt.help
    shown = " ".join(map(str, default)) if isinstance(default, (tuple, list)) else str(default)
    return f"{opt.help} (default: {shown.replace('%', '%%')})"
