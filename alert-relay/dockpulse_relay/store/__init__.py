"""The durable queue: see `sql.py`; `open.py` opens one."""
