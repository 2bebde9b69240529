"""The load generator's own Prometheus metrics, for dashboards to mark stress windows."""
