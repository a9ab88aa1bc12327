"""Rules declared once in annotations (reid/rules.py), enforced from Python as from the command line.

The bad values are generated from the annotations themselves: for every ranged field of every
stage's Config and every ranged parameter of every public function, a value just outside the
range must be refused, in the same words whichever way it enters.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import pkgutil
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Iterator

import numpy as np
import pytest

import reid
from helpers import outside, ranged_number
from reid.config import parse_args
from reid.errors import ReidError
from reid.rules import (
    Checked,
    Count,
    Items,
    PositiveInt,
    Range,
    checked,
    conform,
    finite_matrix,
    parameter_kinds,
    parse_device,
    rules_of,
)

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.stem for p in REPO.glob("*.py"))
BENCHES = sorted(f"bench.{p.stem}" for p in (REPO / "bench").glob("*.py") if p.stem not in ("__init__", "common"))
NUMBERS = (int, float)


def modules(names: list[str]) -> list[types.ModuleType]:
    """The named modules, imported from the repository root."""
    sys.path.insert(0, str(REPO))
    try:
        return [importlib.import_module(n) for n in names]
    finally:
        sys.path.remove(str(REPO))


def configs() -> list[type]:
    """Every Config dataclass a stage script or benchmark declares."""
    return [m.Config for m in modules(SCRIPTS + BENCHES) if dataclasses.is_dataclass(getattr(m, "Config", None))]


def library() -> list[types.ModuleType]:
    """Every module of the reid package but the parts of a subpackage that declares its own
    public names (`reid.synthetic.__all__`): those parts are reached through it."""
    mods = [importlib.import_module(m.name) for m in pkgutil.walk_packages(reid.__path__, "reid.")]
    closed = [m.__name__ + "." for m in mods if hasattr(m, "__path__") and hasattr(m, "__all__")]
    return [m for m in mods if not m.__name__.startswith(tuple(closed))]


def public_names(mod: types.ModuleType) -> dict[str, Any]:
    """A module's public API: its `__all__` where it declares one (a package's included), else
    every name it defines without a leading underscore."""
    if hasattr(mod, "__all__"):
        return {name: getattr(mod, name) for name in mod.__all__}
    return {name: obj for name, obj in vars(mod).items()
            if not name.startswith("_") and getattr(obj, "__module__", None) == mod.__name__}


def public_functions() -> Iterator[tuple[str, Any]]:
    """(name, function) for every public function, and every public method of a public class, in reid/,
    each once (reid.api re-exports the embedders)."""
    seen = set()
    for name, fn in _public_functions():
        if fn not in seen:
            seen.add(fn)
            yield name, fn


def _public_functions() -> Iterator[tuple[str, Any]]:
    for mod in library():
        for name, obj in public_names(mod).items():
            if inspect.isfunction(obj):
                yield f"{mod.__name__}.{name}", obj
            elif inspect.isclass(obj) and not dataclasses.is_dataclass(obj):
                for meth_name, meth in vars(obj).items():
                    fn = meth.__func__ if isinstance(meth, (classmethod, staticmethod)) else meth
                    if inspect.isfunction(fn) and (not meth_name.startswith("_") or meth_name == "__init__"):
                        yield f"{obj.__module__}.{name}.{meth_name}", fn


def is_numeric(kind: Any) -> bool:
    """Whether an annotation is a number, or holds numbers (an optional one, a list of them)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Annotated:
        return is_numeric(args[0])
    if origin in (typing.Union, types.UnionType, tuple, list, Sequence):
        return any(is_numeric(a) for a in args if a is not Ellipsis)
    return kind in NUMBERS


def hints(fn: Any) -> dict[str, Any]:
    """The resolved parameter annotations of a function (unwrapped from @checked), as @checked reads them."""
    return parameter_kinds(fn)


def ranges(kind: Any) -> list[Range]:
    return [r for r in rules_of(kind) if isinstance(r, Range)]


def inside(kind: Any) -> Any:
    """A value the annotation allows (a list's one item), for the parameters a call does not probe."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Annotated:
        base, rules = args[0], [r for r in kind.__metadata__ if isinstance(r, Range)]
        if rules and rules[0].lo is not None:
            return rules[0].lo + (1 if rules[0].lo_open else 0)
        return inside(base)
    if origin in (typing.Union, types.UnionType):
        return None if type(None) in args else inside(args[0])
    if origin in (tuple, list, Sequence):
        return (inside(args[0]),)
    if origin is typing.Literal:
        return args[0]
    return {int: 1, float: 1.0, bool: False, str: "x"}.get(kind)


# ---------------------------------------------------------------- every number carries a rule

def test_every_numeric_config_field_carries_a_rule_and_the_config_checks_it():
    missing = []
    for cls in configs():
        assert issubclass(cls, Checked), f"{cls.__module__}.Config is not built on reid.rules.Checked"
        kinds = typing.get_type_hints(cls, include_extras=True)
        missing += [f"{cls.__module__}.Config.{f.name}" for f in dataclasses.fields(cls)
                    if is_numeric(kinds[f.name]) and not ranges(kinds[f.name])]
    assert not missing, f"numeric fields without a rule: {missing}"


def test_every_numeric_parameter_of_a_public_function_carries_a_rule_that_is_checked():
    missing, unchecked = [], []
    for name, fn in public_functions():
        kinds = hints(fn)
        numeric = [p for p in inspect.signature(inspect.unwrap(fn)).parameters if is_numeric(kinds.get(p))]
        missing += [f"{name}({p})" for p in numeric if not ranges(kinds[p])]
        if numeric and not getattr(fn, "__checked__", False):
            unchecked.append(name)
    assert not missing, f"numeric parameters without a rule: {missing}"
    assert not unchecked, f"public functions with ranged parameters but no @checked: {unchecked}"


# ---------------------------------------------------------------- bad values, generated from the rules

def config_cases() -> Iterator[Any]:
    for cls in configs():
        kinds = typing.get_type_hints(cls, include_extras=True)
        for f in dataclasses.fields(cls):
            scalar = ranged_number(kinds[f.name])
            for rule in ranges(scalar) if scalar is not None else ():
                for bad in outside(rule, typing.get_args(scalar)[0] is int):
                    yield pytest.param(cls, f.name, bad, id=f"{cls.__module__}.{f.name}={bad}")


@pytest.mark.parametrize("cls, field, bad", list(config_cases()))
def test_a_bad_config_value_is_refused_in_the_same_words_from_python_and_the_command_line(cls, field, bad):
    with pytest.raises(ReidError) as from_python:
        cls(**{field: bad})
    with pytest.raises(ReidError) as from_cli:
        parse_args(cls, [f"--{field}={bad}"])
    assert str(from_python.value) == str(from_cli.value)
    assert str(from_python.value).startswith(f"--{field}={bad}: expected ")
    assert "\n" not in str(from_python.value)


def function_cases() -> Iterator[Any]:
    for name, fn in public_functions():
        if not getattr(fn, "__checked__", False):
            continue
        kinds = hints(fn)
        for param in inspect.signature(inspect.unwrap(fn)).parameters:
            scalar = ranged_number(kinds.get(param))
            for rule in ranges(scalar) if scalar is not None else ():
                for bad in outside(rule, typing.get_args(scalar)[0] is int):
                    yield pytest.param(fn, param, bad, id=f"{name}({param}={bad})")


@pytest.mark.parametrize("fn, param, bad", list(function_cases()))
def test_a_public_function_refuses_a_bad_value_before_it_runs(fn, param, bad):
    """The other parameters are given nothing usable (None) or a value their own rule allows:
    the refusal must come from the rule, before the function's body could trip on them."""
    kinds = hints(fn)
    params = inspect.signature(inspect.unwrap(fn)).parameters
    call = {p: (inside(kinds[p]) if p in kinds and rules_of(kinds[p]) else None)
            for p, spec in params.items()
            if spec.default is inspect.Parameter.empty and spec.kind not in (spec.VAR_POSITIONAL, spec.VAR_KEYWORD)}
    call[param] = bad
    with pytest.raises(ReidError) as err:
        fn(**call)
    assert str(err.value).startswith(f"{param}={bad}: expected "), err.value


# ---------------------------------------------------------------- the mechanism itself

@dataclasses.dataclass
class Example(Checked):
    epochs: PositiveInt = 8  # passes
    seeds: tuple[Count, ...] = (1, 2)  # one per model
    splits: Annotated[tuple[str, ...], Items(distinct=True)] = ("test",)  # what to do
    data_dir: Path = Path("data")  # where


def test_construction_conforms_types_as_the_command_line_does():
    cfg = Example(epochs=np.int64(3), seeds=[4], data_dir="~/x")
    assert cfg.epochs == 3 and type(cfg.epochs) is int
    assert cfg.seeds == (4,) and cfg.data_dir == Path("~/x").expanduser()
    assert dataclasses.replace(cfg, epochs=2).epochs == 2
    for bad, words in [(dict(epochs=2.5), "--epochs=2.5: expected int"), (dict(epochs=True), "expected int"),
                       (dict(seeds=(1, -1)), "--seeds=1,-1: expected at least 0"),
                       (dict(splits=()), "--splits=: expected at least 1 value"),
                       (dict(splits=("a", "a")), "--splits=a,a: expected each value once"),
                       (dict(data_dir=3), "--data_dir=3: expected a path")]:
        with pytest.raises(ReidError, match=words):
            Example(**bad)
    with pytest.raises(ReidError, match="--epochs=0: expected at least 1"):
        dataclasses.replace(cfg, epochs=0)


def test_checked_conforms_the_arguments_it_passes_on():
    @checked
    def scaled(x: Any, k: PositiveInt = 2, share: Annotated[float, Range(0, 1)] | None = None) -> tuple:
        return k, share

    assert scaled(None, np.int32(3), 1) == (3, 1.0)
    with pytest.raises(ReidError, match=r"^share=1.5: expected at least 0 and at most 1$"):
        scaled(None, share=1.5)
    with pytest.raises(ReidError, match=r"^k=nan: expected int$"):
        scaled(None, k=float("nan"))
    assert scaled(x=None, k=4) == (4, None), "a positional parameter given by name is checked too"
    with pytest.raises(ReidError, match=r"^k=0: expected at least 1$"):
        scaled(x=None, k=0)
    for call, words in [(lambda: scaled(), "missing a required argument: 'x'"),
                        (lambda: scaled(None, 2, 0.5, 9), "too many positional arguments"),
                        (lambda: scaled(None, kk=2), "got an unexpected keyword argument 'kk'")]:
        with pytest.raises(ReidError, match=rf"^scaled\(\): {words}$"):
            call()


def test_one_device_vocabulary():
    assert [parse_device(d) for d in ("auto", "cpu", "cuda", "cuda:1")] == [
        ("auto", None), ("cpu", None), ("cuda", None), ("cuda", 1)]
    for bad in ("gpu0", "cpu:1", "cuda:x", "meta", ""):
        with pytest.raises(ReidError, match=f"^device={bad}: expected auto, cpu, cuda or cuda:<index>$"):
            parse_device(bad)


def test_one_matrix_check():
    assert finite_matrix([[1, 2]], "m").dtype == np.float32
    assert finite_matrix(np.ones((2, 2), dtype=np.int64), "m", dtype=None).dtype == np.float64
    for bad, shape, words in [(np.ones(3), (None, None), r"m: expected a 2-D matrix, got shape \(3,\)"),
                              (np.ones((2, 2), dtype=np.complex64), (None, None),
                               "m: a matrix of real numbers, not complex64"),
                              (np.array([[1.0, np.nan]]), (1, None), "m: contains NaN or inf"),
                              (np.ones((2, 3)), (2, 2), r"m: shape \(2, 3\) does not match 2 x 2 \(the ids\)")]:
        with pytest.raises(ReidError, match=words):
            finite_matrix(bad, "m", shape, sizes="the ids")


def test_conform_names_the_field_in_command_line_words():
    with pytest.raises(ReidError, match=r"^--lr=inf: expected a finite number$"):
        conform("--lr", Annotated[float, Range(lo=0)], math.inf)
