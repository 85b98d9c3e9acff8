"""Time-series store of readings behind one interface: SQLite by default, PostgreSQL by URL."""

from crowdsafe.store.store import Store, StoreError, open_store

__all__ = ["Store", "StoreError", "open_store"]
