"""The fast renderer writes exactly what prometheus_client's generate_latest writes, for any
label values (quotes, backslashes, line feeds, unicode) and any values (NaN, +-Inf)."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from dockpulse_exporter.collector import ContainerCollector
from dockpulse_exporter.families import Family, LabelSet, LineCache, render_families
from dockpulse_exporter.model import NetworkCounters, Sample, Snapshot, Usage
from tests.exporter.test_golden import make_container

ANY_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ['"', "\\", "\n", '\\"', "a\nb", "é€😀", "\\n", ""]
)
ANY_VALUE = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**63), 2**64)
LABEL_NAME = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=6).map(
    lambda s: "l" + s
)


@settings(max_examples=200, deadline=None)
@given(
    items=st.dictionaries(LABEL_NAME, ANY_TEXT, max_size=4),
    extra=st.lists(st.tuples(ANY_TEXT, ANY_VALUE), max_size=4),
    value=ANY_VALUE,
    kind=st.sampled_from(["gauge", "counter"]),
    doc=ANY_TEXT,
)
def test_family_text_equals_generate_latest(items, extra, value, kind, doc) -> None:
    labels = LabelSet(tuple(items.items()))
    plain = Family("m_plain", kind, doc)
    plain.add(labels, value)
    with_extra = Family("m_extra", kind, doc, ("zz_extra",))
    for extra_value, sample_value in extra:
        with_extra.add(labels, sample_value, extra_value)
    families = [plain, with_extra]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Static([f.to_metric() for f in families]))
    assert render_families(families) == generate_latest(registry)


@settings(max_examples=100, deadline=None)
@given(
    name=ANY_TEXT,
    image=ANY_TEXT,
    docker_labels=st.dictionaries(ANY_TEXT, ANY_TEXT, max_size=3),
    interface=ANY_TEXT,
    cpu=ANY_VALUE,
    memory=ANY_VALUE,
)
def test_container_exposition_equals_generate_latest(
    name, image, docker_labels, interface, cpu, memory
) -> None:
    container = make_container(name=name, image=image, labels=docker_labels)
    usage = Usage(cpu_usage_seconds=cpu, memory_usage_bytes=memory)
    usage.network[interface] = NetworkCounters(receive_bytes=memory)
    usage.io_read_bytes[interface] = cpu
    snapshot = Snapshot(samples=(Sample(container, usage, 1.5, "/docker/x", 10),))
    collector = ContainerCollector(lambda: snapshot)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    fast = render_families(collector.metrics.families(snapshot))
    assert fast == generate_latest(registry)


class _Static:
    def __init__(self, metrics: list) -> None:
        self.metrics = metrics

    def collect(self):
        return iter(self.metrics)


@settings(max_examples=200, deadline=None)
@given(first=ANY_VALUE, second=ANY_VALUE, extra=ANY_TEXT)
def test_cached_lines_follow_value_changes(first, second, extra) -> None:
    labels = LabelSet((("name", "a"),))
    lines = LineCache()
    for value in (first, second, second, first):
        family = Family("m", "gauge", "doc", ("device",))
        family.add(labels, value, extra)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Static([family.to_metric()]))
        assert render_families([family], lines) == generate_latest(registry)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.tuples(ANY_VALUE, ANY_VALUE, st.booleans()), min_size=2, max_size=4))
def test_reused_rows_and_lines_follow_changes(values) -> None:
    """Across refreshes (cached rows and lines), each exposition is still generate_latest's."""
    container = make_container()
    snapshot = [Snapshot()]
    collector = ContainerCollector(lambda: snapshot[0])
    lines = LineCache()
    usage = Usage()
    for cpu, memory, new_usage in values:
        if new_usage:  # the reader hands a new Usage only when a file changed
            usage = Usage(cpu_usage_seconds=cpu, memory_usage_bytes=memory)
        snapshot[0] = Snapshot(samples=(Sample(container, usage, cpu, "/docker/x", 1),))
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        expected = generate_latest(registry)
        fast = render_families(collector.metrics.families(snapshot[0]), lines)
        assert fast == expected
