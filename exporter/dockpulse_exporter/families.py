"""Metric families built straight as exposition text, with each container's labels formatted once.

A container's label set repeats on ~50 series and rarely changes, so `LabelSet` formats it once
and keeps the text across refreshes; a render then costs one string join per sample. The text
is byte-for-byte what `prometheus_client.generate_latest` writes for the same families
(`Family.to_metric` gives them to it; a property test holds the two to that).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from math import copysign
from typing import Generic, TypedDict, TypeVar, Unpack

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.utils import floatToGoString


def escape_label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


class LabelSet:
    """One series' base labels (name, id, image, container_label_*), formatted once; extra
    labels (cpu, device, interface, state...) are merged in their sorted place when a line is
    rendered (rarely: unchanged lines are reused, see LineCache)."""

    __slots__ = ("items", "plain")

    def __init__(self, items: tuple[tuple[str, str], ...]) -> None:
        self.items = items
        self.plain = self._format(items)

    @staticmethod
    def _format(items: Iterable[tuple[str, str]]) -> str:
        pairs = sorted(items)
        if not pairs:
            return ""
        return "{" + ",".join(f'{k}="{escape_label_value(v)}"' for k, v in pairs) + "}"

    def text(self, names: tuple[str, ...], values: tuple[str, ...]) -> str:
        if not names:
            return self.plain
        return self._format((*self.items, *zip(names, values, strict=True)))

    def as_dict(self, names: tuple[str, ...] = (), values: tuple[str, ...] = ()) -> dict[str, str]:
        return {**dict(self.items), **dict(zip(names, values, strict=True))}


MINUS = ord("-")
Row = tuple[LabelSet, tuple[str, ...], float]  # base labels, extra label values, value


@dataclass(slots=True)
class Family:
    """A counter or gauge family; `name` without the `_total` a counter gets in the text."""

    name: str
    kind: str  # "counter" or "gauge"
    help: str
    extra: tuple[str, ...] = ()
    rows: list[Row] = field(default_factory=list)

    def add(self, labels: LabelSet, value: float, *extra_values: str) -> None:
        self.rows.append((labels, extra_values, value))

    def render(self, out: list[bytes], lines: LineCache | None = None) -> None:
        """Append this family's exposition lines to `out`, reusing `lines` where a series'
        value did not change since the last render."""
        name = self.name + "_total" if self.kind == "counter" else self.name
        header = f"# HELP {name} {escape_help(self.help)}\n# TYPE {name} {self.kind}\n"
        out.append(header.encode())
        lines = lines or LineCache()
        old = lines.old.get(name, {})
        new = lines.new[name] = {}
        extra = self.extra
        append = out.append
        for row in self.rows:
            line = old.get(row)
            value = row[2]
            # A dict hit means an equal value; only 0.0 and -0.0 are equal with other text.
            if line is None or (not value and (copysign(1.0, value) < 0) != (line[-5] == MINUS)):
                labels, values, _ = row
                text = labels.text(extra, values) if extra else labels.plain
                line = f"{name}{text} {floatToGoString(value)}\n".encode()
            new[row] = line
            append(line)

    def to_metric(self) -> Metric:
        """The same family as prometheus_client's Metric (for registries and the tests)."""
        make = CounterMetricFamily if self.kind == "counter" else GaugeMetricFamily
        metric = make(self.name, self.help)
        sample_name = self.name + "_total" if self.kind == "counter" else self.name
        for labels, values, value in self.rows:
            metric.add_sample(sample_name, labels.as_dict(self.extra, values), value)
        return metric


Source = TypeVar("Source")
Series = Iterable[tuple[tuple[str, ...], float]]  # (extra label values, value) pairs
NO_EXTRA: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FamilySpec(Generic[Source]):
    """A family and where its series come from, in one place: `value` gives one series
    without extra labels (none when it returns None), `series` several (extra values, value).
    A table of these is the whole list of families; their order is the exposition's."""

    name: str
    kind: str  # "counter" or "gauge"
    help: str
    value: Callable[[Source], float | None] | None = None
    series: Callable[[Source], Series] | None = None
    extra: tuple[str, ...] = ()
    per_refresh: bool = False  # changes at every refresh: never cached with the other rows

    def __post_init__(self) -> None:
        if (self.value is None) == (self.series is None):
            raise ValueError(f"family {self.name}: give exactly one of value and series")

    def family(self) -> Family:
        return Family(self.name, self.kind, self.help, self.extra)

    def rows(self, labels: LabelSet, source: Source) -> list[Row]:
        if self.value is not None:
            value = self.value(source)
            return [] if value is None else [(labels, NO_EXTRA, value)]
        assert self.series is not None
        return [(labels, extra, value) for extra, value in self.series(source)]


class How(TypedDict, Generic[Source], total=False):
    """Where a FamilySpec's series come from (its fields after name, kind and help)."""

    value: Callable[[Source], float | None]
    series: Callable[[Source], Series]
    extra: tuple[str, ...]
    per_refresh: bool


def counter(name: str, doc: str, **how: Unpack[How]) -> FamilySpec:
    return FamilySpec(name, "counter", doc, **how)


def gauge(name: str, doc: str, **how: Unpack[How]) -> FamilySpec:
    return FamilySpec(name, "gauge", doc, **how)


class LineCache:
    """The encoded lines of the last render, by family and row; a row holds its value, so a
    line is reused exactly when its series' value is unchanged. Each render keeps only its own
    lines."""

    def __init__(self) -> None:
        self.old: dict[str, dict[Row, bytes]] = {}
        self.new: dict[str, dict[Row, bytes]] = {}

    def turn(self) -> None:
        self.old, self.new = self.new, {}


def render_families(families: Iterable[Family], lines: LineCache | None = None) -> bytes:
    """The families as exposition text (UTF-8), as generate_latest writes them."""
    return b"".join(render_by_family(families, lines))


def render_by_family(families: Iterable[Family], lines: LineCache | None = None) -> Iterator[bytes]:
    """The same text, one family at a time (a consumer never holds the whole of it)."""
    lines = lines or LineCache()
    for family in families:
        out: list[bytes] = []
        family.render(out, lines)
        yield b"".join(out)
    lines.turn()
