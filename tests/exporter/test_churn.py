"""Containers come and go: no stale series, and a recreated name is one container."""

from __future__ import annotations

from tests.helpers import wait_until


def container_id(cgroup_id: str) -> str:
    """The container id in a cgroup path (/docker/<id> or .../docker-<id>.scope)."""
    return cgroup_id.rsplit("/", 1)[-1].removeprefix("docker-").removesuffix(".scope")


def ids_by_name(samples) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for name, labels, _ in samples:
        if name == "container_up":
            found.setdefault(labels["name"], set()).add(container_id(labels["id"]))
    return found


def series_ids(samples) -> set[str]:
    return {container_id(labels["id"]) for _, labels, _ in samples if "id" in labels}


def test_churn_leaves_no_stale_series(exporter, run_container) -> None:
    batch = [run_container("sleep 300") for _ in range(25)]
    batch_ids = {c.id for c in batch}
    wait_until(lambda: batch_ids <= series_ids(exporter.scrape()), timeout=30)
    for container in batch:
        container.remove(force=True)
    wait_until(lambda: not (batch_ids & series_ids(exporter.scrape())), timeout=30)


def test_recreated_name_is_one_container_with_the_new_id(exporter, run_container) -> None:
    first = run_container("sleep 300", name="exporter-test-recreated")
    wait_until(lambda: ids_by_name(exporter.scrape()).get(first.name) == {first.id})
    first.remove(force=True)
    second = run_container("sleep 300", name="exporter-test-recreated")
    assert second.id != first.id
    wait_until(lambda: ids_by_name(exporter.scrape()).get(second.name) == {second.id})
    assert first.id not in series_ids(exporter.scrape())
