"""Plan: which buffered alerts become which mails, when (buffer, cooldown, digest, heartbeat,
silences), and the loop that applies it under the planner lease."""
