"""What a value may be, declared once in its annotation and enforced wherever it enters.

A number's range sits beside its default (`batch_size: PositiveInt = 32`, `k1: PositiveInt =
20`), and so do a list's size, a folder name, a file that must exist, a device. They are
checked where a value enters:

- a Config dataclass built on `Checked` conforms every field when it is constructed, from
  the command line (`reid.config.parse_args`) or from Python (`Config(batch_size=0)`) alike;
- a public function decorated with `@checked` conforms its annotated parameters on every call
  (scikit-learn's `validate_params` is the model);
- `reid.config.parse_args` turns text into the annotated type under the same rules, so a
  refusal quotes the text as typed.

The error is one line naming the field and the value: `--batch_size=0: expected at least 1`
for a Config field, the same from Python as from the command line; `k1=0: expected at least
1` for a parameter, its value as Python spells it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, TypeVar

import numpy as np

from reid.errors import ReidError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Range:
    """The values a number allows, declared beside its default through the aliases below
    (`batch_size: PositiveInt = 32`); NaN and inf are never allowed."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def problem(self, value: Any) -> str | None:
        """Why `value` is outside the range (None when it is inside)."""
        too_low = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        too_high = self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi)
        return f"expected {self}" if too_low or too_high else None

    def __str__(self) -> str:
        low = f"{'above' if self.lo_open else 'at least'} {self.lo:g}" if self.lo is not None else ""
        high = f"{'below' if self.hi_open else 'at most'} {self.hi:g}" if self.hi is not None else ""
        return " and ".join(p for p in (low, high) if p) or "a finite number"


@dataclass(frozen=True)
class FolderName:
    """A single folder name: not empty, no path separator, not `.` or `..` (it names a folder
    inside another, and must stay there)."""

    def problem(self, value: str) -> str | None:
        """Why `value` is not a plain folder name (None when it is one)."""
        if not value or value in (".", "..") or "/" in value or "\\" in value:
            return "expected a plain folder name (no '/', not empty, not . or ..)"
        return None

    def __str__(self) -> str:
        return "a plain folder name"


@dataclass(frozen=True)
class Items:
    """How many items a list holds, and whether each may appear once only: `splits=` names what
    to do, so none is nothing to do and a split named twice would be done twice."""

    at_least: int = 1
    distinct: bool = False

    def problem(self, value: Any) -> str | None:
        """Why `value` has too few items or a repeated one (None when it has neither)."""
        if len(value) < self.at_least:
            return f"expected {self}"
        if self.distinct and len(set(value)) < len(value):
            return "expected each value once"
        return None

    def __str__(self) -> str:
        each = ", each once" if self.distinct else ""
        return f"at least {self.at_least} value{'s' if self.at_least > 1 else ''}{each}"


@dataclass(frozen=True)
class ExistingFile:
    """A path to a file that is there now: a field such as `pretrained=` is read much later, after
    minutes of work that a missing file would waste."""

    def problem(self, value: Path) -> str | None:
        """Why `value` is not an existing file (None when it is one)."""
        if value.is_file():
            return None
        return "no such file" if not value.exists() else "not a file"

    def __str__(self) -> str:
        return "an existing file"


_DEVICE = re.compile(r"(auto|cpu|cuda)(?::(\d+))?")


def parse_device(device: Any) -> tuple[str, int | None]:
    """(kind, index) of a device name or a torch.device: the one vocabulary every stage and both
    runtimes take, `auto` (CUDA where there is one), `cpu`, `cuda` or `cuda:<index>`. Read
    without torch, so the ONNX path needs none."""
    found = _DEVICE.fullmatch(str(device))
    if not found or (found.group(2) is not None and found.group(1) != "cuda"):
        raise ReidError(f"device={device}: expected auto, cpu, cuda or cuda:<index>")
    return found.group(1), None if found.group(2) is None else int(found.group(2))


@dataclass(frozen=True)
class DeviceName:
    """A device in `parse_device`'s vocabulary."""

    def problem(self, value: str) -> str | None:
        """Why `value` names no device (None when it names one)."""
        try:
            parse_device(value)
        except ReidError:
            return "expected auto, cpu, cuda or cuda:<index>"
        return None

    def __str__(self) -> str:
        return "auto, cpu, cuda or cuda:<index>"


PositiveInt = Annotated[int, Range(lo=1)]
Count = Annotated[int, Range(lo=0)]  # zero allowed
Positive = Annotated[float, Range(lo=0, lo_open=True)]
NonNegative = Annotated[float, Range(lo=0)]
Probability = Annotated[float, Range(lo=0, hi=1)]
Finite = Annotated[float, Range()]  # any finite number
Folder = Annotated[str, FolderName()]
Device = Annotated[str, DeviceName()]
Rule = Range | FolderName | Items | ExistingFile | DeviceName


def shown(value: Any) -> str:
    """A value as the command line would spell it (`none`, `true`, `a,b`)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return ",".join(map(shown, value))
    return str(value)


class Invalid(Exception):
    """Why a value does not conform to its annotation (the caller names the field)."""


def _union(kind: Any, args: tuple, value: Any) -> Any:
    """The value as the first member of a union it conforms to."""
    if value is None and type(None) in args:
        return None
    reasons = []
    for member in (a for a in args if a is not type(None)):
        try:
            return _conform(member, value)
        except Invalid as exc:
            reasons.append(str(exc))
    raise Invalid(reasons[0] if len(reasons) == 1 else f"expected {describe(kind)}")


def describe(kind: Any) -> str:
    """A short name for a type, as an error says what it expected."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Annotated:
        rules = [str(r) for r in kind.__metadata__ if isinstance(r, Rule) and not isinstance(r, Range)]
        return ", ".join(rules) or describe(args[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    if kind is type(None):
        return "none"
    if kind is bool:
        return "true or false"
    if kind is Path:
        return "a path"
    if origin in (tuple, list, Sequence):
        return f"a list of {describe(args[0]) if args else 'values'}"
    return getattr(kind, "__name__", str(kind))


def _number(kind: type, value: Any) -> Any:
    """An int (not a bool) for int, an int or float as float for float, and finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise Invalid(f"expected {kind.__name__}")
    if kind is int:
        if isinstance(value, float) or not float(value).is_integer():
            raise Invalid("expected int")
        return int(value)
    if not math.isfinite(value):
        raise Invalid("expected a finite number")
    return float(value)


def rule_problem(kind: Any, value: Any) -> str | None:
    """Why `value`, already of an Annotated type's base, breaks one of its rules (None if none)."""
    return next((p for r in kind.__metadata__ if isinstance(r, Rule) and (p := r.problem(value))), None)


def _conform(kind: Any, value: Any) -> Any:
    """`value` as the annotated type (str becomes Path, int becomes float, list becomes tuple),
    within every rule the annotation carries; else `Invalid` saying why."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Annotated:
        value = _conform(args[0], value)
        if problem := rule_problem(kind, value):
            raise Invalid(problem)
        return value
    if origin in (typing.Union, types.UnionType):
        return _union(kind, args, value)
    if origin is typing.Literal:
        if value not in args:
            raise Invalid(f"expected one of {', '.join(map(str, args))}")
        return value
    if origin in (tuple, list, Sequence):
        if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list, np.ndarray)) or np.ndim(value) != 1:
            raise Invalid(f"expected {describe(kind)}")
        item = args[0] if args else Any
        items = [_conform(item, v) for v in value]
        return items if origin is list else tuple(items)
    if kind in (int, float):
        return _number(kind, value)
    if kind is bool:
        if not isinstance(value, bool):
            raise Invalid("expected true or false")
        return value
    if kind is Path:
        if not isinstance(value, (str, Path)):
            raise Invalid("expected a path")
        return Path(value).expanduser()
    if kind is str and not isinstance(value, str):
        raise Invalid("expected a string")
    return value


def conform(name: str, kind: Any, value: Any, spell: Callable[[Any], str] = shown) -> Any:
    """`value` as the annotated type of `name`, within its rules; else a one-line ReidError
    `name=value: why`, the value spelled by `spell` (a Config field's `--field=value` as the
    command line spells it, a parameter's as Python does)."""
    try:
        return _conform(kind, value)
    except Invalid as exc:
        raise ReidError(f"{name}={spell(value)}: {exc}") from None


_CONTAINERS = (typing.Union, types.UnionType, tuple, list, Sequence)  # types whose arguments hold values


def rules_of(kind: Any) -> list[Rule]:
    """Every rule an annotation carries, inside unions and sequences too."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    own = [r for r in getattr(kind, "__metadata__", ()) if isinstance(r, Rule)] if origin is Annotated else []
    inner = args[:1] if origin is Annotated else args if origin in _CONTAINERS else ()
    return own + [r for a in inner for r in rules_of(a)]


class Checked:
    """A dataclass base whose fields are conformed to their annotations when an instance is built,
    however it is built (the command line, `Config(...)`, `dataclasses.replace`)."""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            object.__setattr__(self, f.name, conform(f"--{f.name}", hints[f.name], getattr(self, f.name)))


@functools.cache
def _hints(owner: Any) -> dict[str, Any]:
    """The resolved annotations of a class, with their rules (cached: resolving is slow)."""
    return typing.get_type_hints(owner, include_extras=True)


@functools.cache
def parameter_kinds(fn: Callable[..., Any]) -> dict[str, Any]:
    """The resolved annotation of each parameter of `fn`, with its rules. One at a time: a type
    that only a type checker imports (`if TYPE_CHECKING:`) is left out, and carries no rule."""
    fn = inspect.unwrap(fn)
    kinds = {}
    for name, text in inspect.get_annotations(fn).items():
        holder = types.SimpleNamespace(__annotations__={name: text})
        try:
            kinds |= typing.get_type_hints(holder, globalns=fn.__globals__, include_extras=True)
        except NameError:
            continue
    return kinds


def checked(fn: F) -> F:
    """Conform every annotated parameter of `fn` that carries a rule or a choice on each call
    (the arguments given; defaults are the author's), so that a public function refuses `k1=0`
    in the same words as the command line. Per-image functions carry it too, so a call costs a
    few dictionary lookups, and `inspect.Signature.bind` runs only to name a wrong call."""
    signature = inspect.signature(fn)
    params = signature.parameters.values()
    positional = {p.name: i for i, p in enumerate(params) if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)}
    by_name = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    required = [(p.name, positional.get(p.name, len(positional))) for p in params
                if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    rest = any(p.kind is p.VAR_POSITIONAL for p in params), any(p.kind is p.VAR_KEYWORD for p in params)

    def well_formed(args: tuple, kwargs: dict) -> bool:
        return ((rest[0] or len(args) <= len(positional)) and (rest[1] or kwargs.keys() <= by_name)
                and all(i < len(args) or name in kwargs for name, i in required))

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not well_formed(args, kwargs):
            try:
                signature.bind(*args, **kwargs)
            except TypeError as exc:  # an unknown or missing argument, named as Python names it
                raise ReidError(f"{fn.__name__}(): {exc}") from None
        values = list(args)
        for name, kind in _ruled(fn):
            i = positional.get(name, len(values))
            if i < len(values):
                values[i] = conform(name, kind, values[i], spell=repr)
            elif name in kwargs:
                kwargs[name] = conform(name, kind, kwargs[name], spell=repr)
        return fn(*values, **kwargs)

    wrapper.__checked__ = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


@functools.cache
def _ruled(fn: Callable[..., Any]) -> list[tuple[str, Any]]:
    """(name, annotation) of the parameters of `fn` whose annotation carries a rule or a choice."""
    return [(name, kind) for name, kind in parameter_kinds(fn).items() if name != "return" and _has_rule(kind)]


@functools.cache
def _has_rule(kind: Any) -> bool:
    """Whether an annotation says more than a type: a rule or a set of choices."""
    return bool(rules_of(kind)) or _has_choice(kind)


def _has_choice(kind: Any) -> bool:
    """Whether an annotation holds a Literal (inside unions and sequences too)."""
    origin = typing.get_origin(kind)
    return origin is typing.Literal or any(_has_choice(a) for a in typing.get_args(kind) if not isinstance(a, str))


@checked
def finite_matrix(m: Any, name: str, shape: tuple[Count | None, Count | None] = (None, None),
                  dtype: type | None = np.float32, sizes: str = "") -> np.ndarray:
    """`m` as a 2-D array of finite real numbers in `dtype` (None: a float dtype kept, integers as
    float64), of `shape` where it says a size (`sizes` says what sets it); else a ReidError
    naming `name`. The one check of every matrix that enters (features, distance blocks, saved
    matrices), so each refuses the same things in the same words; finiteness is read from the
    minimum and maximum, which NaN propagates, so no N x N temporary is made."""
    m = np.asarray(m)
    if m.ndim != 2:
        raise ReidError(f"{name}: expected a 2-D matrix, got shape {m.shape}")
    if not (np.issubdtype(m.dtype, np.floating) or np.issubdtype(m.dtype, np.integer)) or m.dtype == bool:
        raise ReidError(f"{name}: a matrix of real numbers, not {m.dtype}")
    if any(want is not None and got != want for got, want in zip(m.shape, shape, strict=True)):
        wanted = " x ".join("any" if s is None else str(s) for s in shape)
        raise ReidError(f"{name}: shape {m.shape} does not match {wanted}{f' ({sizes})' if sizes else ''}")
    if dtype is not None:
        m = m.astype(dtype, copy=False)
    elif not np.issubdtype(m.dtype, np.floating):
        m = m.astype(np.float64)
    if m.size and not (np.isfinite(m.min()) and np.isfinite(m.max())):
        raise ReidError(f"{name}: contains NaN or inf")
    return m
