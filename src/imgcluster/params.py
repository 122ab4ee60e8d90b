"""What a stage declares about the parameters it takes, and the checks made from that declaration.

As scikit-learn's ``_parameter_constraints``: each clusterer and reducer class carries
``parameters``, a dict from each ``__init__`` parameter's name to the values it accepts (a list of
constraints, any one of which may hold). ``make_clusterer`` and ``make_reducer`` check what they
are given against it, so a parameter a stage does not take is refused with the stages that take it,
never swallowed by a ``**_``.

    parameters = {"k": [Interval(int, 1, None), None], "seed": [Interval(int, 0, None)]}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Union

from .errors import ConfigError, NotFitted


@dataclass(frozen=True)
class Interval:
    """Numbers of ``kind`` (int: whole numbers only) from ``low`` to ``high``; None leaves a side open.
    ``open_low`` excludes ``low`` itself (a positive distance, say)."""

    kind: type
    low: float | None = None
    high: float | None = None
    open_low: bool = False

    def holds(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        if not isinstance(value, Integral if self.kind is int else Real):
            return False
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return self.high is None or value <= self.high

    def __str__(self) -> str:
        what = "a whole number" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            return f"{what} from {self.low} to {self.high}"
        if self.low is not None:
            return f"{what} {'above' if self.open_low else 'from'} {self.low}"
        return what if self.high is None else f"{what} up to {self.high}"


@dataclass(frozen=True)
class Options:
    """One of a few strings."""

    choices: tuple[str, ...]

    def holds(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.choices

    def __str__(self) -> str:
        return "one of " + ", ".join(self.choices)


@dataclass(frozen=True)
class Anything:
    """Any value: for runtime inputs the stage checks itself (a precomputed neighbour graph)."""

    what: str

    def holds(self, value: Any) -> bool:
        return True

    def __str__(self) -> str:
        return self.what


Constraint = Union[Interval, Options, Anything, None]
Parameters = Mapping[str, list[Constraint]]


def check_parameters(stage: str, declared: Parameters, given: Mapping[str, Any]) -> None:
    """Raise ConfigError when a value in ``given`` holds none of its declared constraints.
    Names ``declared`` lacks are the caller's to refuse (it knows which other stages take them)."""
    for name, value in given.items():
        constraints = declared.get(name)
        if constraints is None or any(_holds(c, value) for c in constraints):
            continue
        wanted = " or ".join("unset (None)" if c is None else str(c) for c in constraints)
        raise ConfigError(f"{stage}'s {name} must be {wanted}; got {value!r}.")


def _holds(constraint: Constraint, value: Any) -> bool:
    return value is None if constraint is None else constraint.holds(value)


def takers(name: str, registry: Mapping[str, type]) -> list[str]:
    """The registry names whose classes declare the parameter ``name``, sorted."""
    return sorted(key for key, cls in registry.items() if name in getattr(cls, "parameters", {}))


def refuse_undeclared(kind: str, name: str, registry: Mapping[str, type], given: Iterable[str]) -> None:
    """ConfigError for the first of ``given`` that registry entry ``name`` does not declare, naming
    the entries that do: ``k applies to agglomerative, kmeans and spectral, not dbscan; …``."""
    declared = getattr(registry[name], "parameters", {})
    for parameter in given:
        if parameter not in declared:
            raise ConfigError(not_applicable(parameter, name, takers(parameter, registry), kind, parameter))


def not_applicable(parameter: str, method: str, applies_to: list[str], kind: str = "method",
                   drop: str | None = None) -> str:
    """The message for a setting given to a ``kind`` (method, reducer) that does not take it;
    ``drop`` says how it was given (default: the CLI option ``--parameter-name``)."""
    drop = drop or "--" + parameter.replace("_", "-")
    if not applies_to:
        return f"No {kind} takes {parameter}, {method} included; leave out {drop}."
    return (f"{parameter} applies to {_joined(applies_to)}, not {method}; drop {drop} or pick "
            f"{'that' if len(applies_to) == 1 else 'one of those'} {kind}{'' if len(applies_to) == 1 else 's'}.")


def _joined(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def require_fitted(obj: object, attribute: str) -> None:
    """Raise NotFitted unless ``obj`` has the learned ``attribute`` its ``fit`` sets."""
    if not hasattr(obj, attribute):
        raise NotFitted(f"{type(obj).__name__} is not fitted yet; call fit() first.")
