"""Adapters of the risk engine: geolocation, IP lists, user-agent parsing, and the replay."""
