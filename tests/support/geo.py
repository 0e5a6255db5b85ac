"""Builds ``.mmdb`` fixtures with ``mmdb-writer`` (what an operator's GeoLite2 files hold)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmdb_writer import MMDBWriter
from netaddr import IPSet

# network -> (country, ASN, city, latitude, longitude)
NETWORKS: dict[str, tuple[str, int, str, float, float]] = {
    "1.1.1.0/24": ("DE", 3320, "Berlin", 52.52, 13.405),
    "1.1.2.0/24": ("DE", 3320, "Potsdam", 52.39, 13.065),
    "2.2.2.0/24": ("US", 7922, "New York", 40.7128, -74.006),
    "5.5.5.0/24": ("US", 16509, "Ashburn", 39.0438, -77.4874),
    "2001:db8::/32": ("FR", 3215, "Paris", 48.8566, 2.3522),
}


def write_city_db(
    path: Path, networks: dict[str, tuple[str, int, str, float, float]] = NETWORKS
) -> Path:
    """One combined City + ASN database (real deployments may use two files; both work)."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-City")
    for network, (country, asn, city, lat, lon) in networks.items():
        record: dict[str, Any] = {
            "country": {"iso_code": country},
            "city": {"names": {"en": city}},
            "location": {"latitude": lat, "longitude": lon},
            "autonomous_system_number": asn,
        }
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return path
