"""The config convention: a dataclass at the top of each script, `--field=value` overrides.

A script declares `@dataclass class Config(Checked)` and ends with `run(main, Config)`. Values
on the command line are typed by the dataclass annotations; an unknown field is an error that
lists the valid ones. `--help` prints the first two paragraphs of the script's docstring (what
it does in a sentence, then the command lines that run it) and every field with its default and
the comment beside it; the rest of the docstring is for readers of the source, and longer
explanations and measured tables live in README.md and docs/.
What a field allows is declared in its annotation (reid/rules.py) and checked when the Config
is built, so a value refused here is refused in the same words from Python.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import sys
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, Mapping, Sequence, TypeVar

from reid.errors import ReidError
from reid.files import write_json
from reid.rules import describe, rule_problem, rules_of

C = TypeVar("C")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_value(text: str, kind: Any, name: str) -> Any:
    """Convert one command-line string to the annotated type of field `name`, within its range."""
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin is Annotated:
        value = _parse_value(text, args[0], name)
        if problem := rule_problem(kind, value):
            raise ReidError(f"--{name}={text}: {problem}")
        return value
    if origin in (typing.Union, types.UnionType):
        if text.lower() in {"none", "null", ""} and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _parse_value(text, inner[0], name)
        for candidate in inner:
            try:
                return _parse_value(text, candidate, name)
            except ReidError:
                continue
        raise ReidError(f"--{name}={text}: expected {describe(kind)}")
    if origin in (tuple, list):
        item = args[0] if args else str
        items = [t for t in (s.strip() for s in text.split(",")) if t]
        values = [_parse_value(t, item, name) for t in items]
        return tuple(values) if origin is tuple else values
    if origin is typing.Literal:
        if text not in args:
            raise ReidError(f"--{name}={text}: expected one of {', '.join(map(str, args))}")
        return text
    if kind is bool:
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ReidError(f"--{name}={text}: expected true or false")
    if kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            raise ReidError(f"--{name}={text}: expected {kind.__name__}") from None
        if not math.isfinite(value):
            raise ReidError(f"--{name}={text}: expected a finite number")
        return value
    if kind is Path:
        return Path(text).expanduser()
    return text


def field_comments(cls: type) -> dict[str, str]:
    """The `# comment` beside each field in the class source (a subclass's first), for `--help`."""
    pattern = re.compile(r"^\s+(\w+)\s*:[^#\n]*#\s*(.*)$")
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        comments |= {m.group(1): m.group(2).strip() for m in map(pattern.match, source.splitlines()) if m}
    return comments


def usage(cls: type) -> str:
    """A table of every field: name, default and comment."""
    comments = field_comments(cls)
    hints = typing.get_type_hints(cls, include_extras=True)
    defaults = to_dict(cls())
    lines = [f"options (--field=value), from {cls.__module__}.{cls.__qualname__}:"]
    for name, default in defaults.items():
        typed = ",".join(map(str, default)) if isinstance(default, list) else default
        rules = list(dict.fromkeys(map(str, rules_of(hints[name]))))
        allowed = f" [{'; '.join(rules)}]" if rules else ""
        lines.append(f"  {f'--{name}={typed}':<40} {comments.get(name, '')}{allowed}".rstrip())
    return "\n".join(lines)


def parse_args(cls: type[C], argv: Sequence[str]) -> C:
    """Build a `cls` from `--field=value` arguments; anything else is a `ReidError`."""
    hints = typing.get_type_hints(cls, include_extras=True)
    names = [f.name for f in dataclasses.fields(cls)]
    values: dict[str, Any] = {}
    for arg in argv:
        match = re.fullmatch(r"--([A-Za-z_]\w*)=(.*)", arg, flags=re.S)
        if not match:
            raise ReidError(f"cannot read argument {arg!r}: use --field=value (see --help)")
        name, text = match.groups()
        if name not in names:
            raise ReidError(f"unknown field --{name}; valid fields: {', '.join(names)}")
        values[name] = _parse_value(text, hints[name], name)
    return cls(**values)


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as JSON-ready values (paths as strings, tuples as lists)."""
    def plain(v: Any) -> Any:
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        return v

    return {k: plain(v) for k, v in dataclasses.asdict(cfg).items()}


def format_config(cfg: Any) -> str:
    """One `name = value` line per field, as printed at the start of a run."""
    return "\n".join(f"  {k} = {v!r}" for k, v in to_dict(cfg).items())


def save_config(cfg: Any, path: Path) -> None:
    """Write the effective config as JSON (atomically, so a crash never leaves half a file)."""
    write_json(to_dict(cfg), path)


def one_line(exc: ReidError) -> str:
    """The message of `exc`; for an error a DataLoader worker raised, torch re-raises it with the
    worker's whole traceback in the message, and only its last line is the message."""
    text = str(exc)
    if "Original Traceback" not in text:
        return text
    last = text.rstrip().splitlines()[-1]
    return last.split(": ", 1)[1] if last.startswith("reid.errors.ReidError: ") else last


def synopsis(doc: str) -> str:
    """A docstring's first two paragraphs, what `--help` shows before the options: the summary
    and the command lines, short enough to read before the options scroll by."""
    return "\n\n".join(re.split(r"\n\s*\n", doc.strip())[:2])


def expand_presets(argv: Sequence[str], presets: Mapping[str, Sequence[str]]) -> list[str]:
    """`argv` with each `--preset=<name>` replaced by that preset's `--field=value` arguments, so
    what follows it on the command line overrides it (nanoGPT's config files, as arguments)."""
    out: list[str] = []
    for arg in argv:
        if not arg.startswith("--preset="):
            out.append(arg)
            continue
        name = arg.removeprefix("--preset=")
        if name not in presets:
            valid = ", ".join(presets) or "none for this script"
            raise ReidError(f"unknown preset {name!r}; valid presets: {valid}")
        out.extend(presets[name])
    return out


def run(main: Callable[[C], Any], cls: type[C], argv: Sequence[str] | None = None,
        presets: Mapping[str, Sequence[str]] | None = None) -> None:
    """The entry point of every script: parse (`--preset=<name>` expanded from `presets`), run,
    and turn a `ReidError` into one clean line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        doc = inspect.getdoc(sys.modules.get(main.__module__))  # the script's own docstring: what it does
        listed = "".join(f"\n  --preset={name:<32} {' '.join(args)}" for name, args in (presets or {}).items())
        help_text = usage(cls) + (f"\npresets (each a set of the options above; later ones override it):{listed}"
                                  if listed else "")
        print(f"{synopsis(doc)}\n\n{help_text}" if doc else help_text)
        return
    try:
        main(parse_args(cls, expand_presets(argv, presets or {})))
    except ReidError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
