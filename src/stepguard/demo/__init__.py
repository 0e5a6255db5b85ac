"""The demo: a seeded SQLite store, a demo policy and what to try."""
