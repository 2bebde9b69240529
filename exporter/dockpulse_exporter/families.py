"""Metric families built straight as exposition text, with each container's labels formatted once.

A container's label set repeats on ~50 series and rarely changes, so `LabelSet` formats it once
and keeps the text across refreshes; a render then costs one string join per sample. The text
is byte-for-byte what `prometheus_client.generate_latest` writes for the same families
(`Family.to_metric` gives them to it; a property test holds the two to that).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from math import copysign

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.utils import floatToGoString


def escape_label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


class LabelSet:
    """One series' base labels (name, id, image, container_label_*), formatted once; extra
    labels (cpu, device, interface, state...) are merged in their sorted place and cached."""

    __slots__ = ("_cache", "items", "lines", "plain")

    def __init__(self, items: tuple[tuple[str, str], ...]) -> None:
        self.items = items
        self.plain = self._format(items)
        self._cache: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}
        # (family, extra label values) -> (value, its line): a value that did not change since
        # the last render reuses its line.
        self.lines: dict[tuple[str, tuple[str, ...]], tuple[float, str]] = {}

    @staticmethod
    def _format(items: Iterable[tuple[str, str]]) -> str:
        pairs = sorted(items)
        if not pairs:
            return ""
        return "{" + ",".join(f'{k}="{escape_label_value(v)}"' for k, v in pairs) + "}"

    def text(self, names: tuple[str, ...], values: tuple[str, ...]) -> str:
        if not names:
            return self.plain
        key = (names, values)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._format((*self.items, *zip(names, values, strict=True)))
        return found

    def as_dict(self, names: tuple[str, ...] = (), values: tuple[str, ...] = ()) -> dict[str, str]:
        return {**dict(self.items), **dict(zip(names, values, strict=True))}


@dataclass(slots=True)
class Family:
    """A counter or gauge family; `name` without the `_total` a counter gets in the text."""

    name: str
    kind: str  # "counter" or "gauge"
    help: str
    extra: tuple[str, ...] = ()
    rows: list[tuple[LabelSet, tuple[str, ...], float]] = field(default_factory=list)

    def add(self, labels: LabelSet, value: float, *extra_values: str) -> None:
        self.rows.append((labels, extra_values, value))

    def render(self, out: list[str]) -> None:
        """Append this family's exposition lines to `out`."""
        name = self.name + "_total" if self.kind == "counter" else self.name
        out.append(f"# HELP {name} {escape_help(self.help)}\n# TYPE {name} {self.kind}\n")
        extra = self.extra
        append = out.append
        for labels, values, value in self.rows:
            key = (name, values)
            cached = labels.lines.get(key)
            if cached is not None and _same(cached[0], value):
                append(cached[1])
                continue
            text = labels.text(extra, values) if extra else labels.plain
            line = f"{name}{text} {floatToGoString(value)}\n"
            labels.lines[key] = (value, line)
            append(line)

    def to_metric(self) -> Metric:
        """The same family as prometheus_client's Metric (for registries and the tests)."""
        make = CounterMetricFamily if self.kind == "counter" else GaugeMetricFamily
        metric = make(self.name, self.help)
        sample_name = self.name + "_total" if self.kind == "counter" else self.name
        for labels, values, value in self.rows:
            metric.add_sample(sample_name, labels.as_dict(self.extra, values), value)
        return metric


def _same(old: float, new: float) -> bool:
    """Same text: equal, and not 0.0 against -0.0 (NaN is never equal, so re-rendered)."""
    return old == new and (bool(new) or copysign(1.0, old) == copysign(1.0, new))


def render_families(families: Iterable[Family]) -> str:
    out: list[str] = []
    for family in families:
        family.render(out)
    return "".join(out)
