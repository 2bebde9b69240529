"""Deliver: the mail backends and the two delivery lanes (retry, dead letters, fallback)."""
