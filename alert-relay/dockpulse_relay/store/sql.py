"""The durable queue: received alerts, composed mails, cooldown times, the heartbeat and leases.

Two stores implement it with the same SQL, written once (`SqlStore`: the queries of `intake.py`,
`planning.py` and `delivery.py` over `base.py`'s connection side) and one schema (`schema.py`):
one SQLite file for one relay (`sqlite.py`), or a PostgreSQL database shared by any number of
relay replicas (`postgres.py`). Either way a webhook is answered 2xx only after its
transaction committed.

What makes N replicas safe on one database, in those modules:
- dedup: an alert's key (fingerprint|status|startsAt) is unique; a second copy, from another
  Alertmanager through another replica, is `ON CONFLICT DO NOTHING`;
- planning (buffer -> mails, cooldowns) runs under the `planner` lease, one replica at a time; if
  a replica loses the lease mid-plan (stalled longer than the lease), its commit finds the alerts
  no longer buffered and rolls back (`PlanConflict`), so nothing is planned twice;
- delivery: a replica claims a due mail with a row lock (`FOR UPDATE SKIP LOCKED` on PostgreSQL)
  and a lease (`claimed_by`, `claimed_until`) that it renews while it sends; a replica killed
  while sending loses the mail to another once the lease ends (RELAY_LEASE);
- "monitoring is blind/back" is queued by whichever replica flips the flag first.
Lease times are the database's clock, so replicas' clocks do not matter for them.
"""

from __future__ import annotations

from dockpulse_relay.store.delivery import DeliveryQueries
from dockpulse_relay.store.intake import IntakeQueries
from dockpulse_relay.store.planning import PlanningQueries


class SqlStore(IntakeQueries, PlanningQueries, DeliveryQueries):
    """The whole store: every stage's queries over one connection side (`SqlBase`)."""
