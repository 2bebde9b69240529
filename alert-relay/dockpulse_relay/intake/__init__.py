"""Intake: Alertmanager's notifications accepted, stored durably before the 2xx, logged."""
