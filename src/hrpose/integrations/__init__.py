"""Adapters that run hrpose inside outside tools (Ray Data); each imports its tool lazily."""
