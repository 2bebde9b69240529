"""The app's blueprints: `status` (/, /health, /metrics) and `stress` (/stress/*)."""
