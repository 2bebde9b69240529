"""Compose: the mail for a plan: cleaned text, links, graphs, the container's context."""
