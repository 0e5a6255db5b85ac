"""The risk engine's adapters on real files: ``.mmdb`` fixtures, CIDR lists, the UA parser."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stepguard.adapters.risk.geo import BundledGeo, GeoUnavailableError, MaxMindGeo, geo_locator
from stepguard.adapters.risk.reputation import CidrLists, ReputationUnavailableError
from stepguard.adapters.risk.useragent import UaParser
from stepguard.core.risk.features import Place
from support.geo import write_city_db


def test_mmdb_lookup_gives_country_asn_city_and_coordinates(tmp_path: Path) -> None:
    geo = MaxMindGeo([write_city_db(tmp_path / "city.mmdb")])
    assert geo.locate("1.1.1.7") == Place(
        country="DE", asn="3320", city="Berlin", latitude=52.52, longitude=13.405
    )
    assert geo.locate("2001:db8::1").country == "FR"
    assert geo.locate("9.9.9.9") == Place()  # not in the database: unknown, not an error


def test_several_files_fill_each_others_gaps(tmp_path: Path) -> None:
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-ASN")
    writer.insert_network(IPSet(["9.9.9.0/24"]), {"autonomous_system_number": 19281})
    writer.to_db_file(str(tmp_path / "asn.mmdb"))
    geo = MaxMindGeo([write_city_db(tmp_path / "city.mmdb"), tmp_path / "asn.mmdb"])
    assert geo.locate("9.9.9.9").asn == "19281"
    assert geo.locate("1.1.1.1").asn == "3320"


def test_a_missing_mmdb_fails_every_lookup(tmp_path: Path) -> None:
    geo = MaxMindGeo([tmp_path / "absent.mmdb"])
    with pytest.raises(GeoUnavailableError):
        geo.locate("1.1.1.1")


def test_a_corrupt_mmdb_fails_every_lookup(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.mmdb"
    corrupt.write_bytes(b"this is not a maxmind database" * 100)
    geo = MaxMindGeo([corrupt])
    with pytest.raises(GeoUnavailableError):
        geo.locate("1.1.1.1")


def test_a_malformed_address_is_a_value_error(tmp_path: Path) -> None:
    geo = MaxMindGeo([write_city_db(tmp_path / "city.mmdb")])
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        geo.locate("not-an-ip")


def test_geoip2fast_is_the_fallback() -> None:
    geo = geo_locator([])
    assert isinstance(geo, BundledGeo)
    place = geo.locate("81.2.69.160")
    assert place.country == "GB"
    assert place.latitude is None
    assert geo.locate("10.0.0.1").country == ""  # private: unknown


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_cidr_lists_match_and_reload_when_a_file_changes(tmp_path: Path) -> None:
    (tmp_path / "tor.txt").write_text("# exits\n203.0.113.9\n2001:db8:dead::/48\n")
    (tmp_path / "hosting.txt").write_text("198.51.100.0/24\n203.0.113.0/25 # a provider\n")
    clock = Clock()
    lists = CidrLists(tmp_path, check_seconds=5.0, monotonic=clock)
    assert lists.categories("203.0.113.9") == {"tor", "hosting"}
    assert lists.categories("198.51.100.200") == {"hosting"}
    assert lists.categories("2001:db8:dead:1::1") == {"tor"}
    assert lists.categories("192.0.2.1") == frozenset()

    bad = tmp_path / "bad.txt"
    bad.write_text("192.0.2.0/28\n")
    assert lists.categories("192.0.2.1") == frozenset()  # not checked again yet
    clock.now = 5.0
    assert lists.categories("192.0.2.1") == {"bad"}

    tor = tmp_path / "tor.txt"
    tor.write_text("192.0.2.1\n")
    stat = tor.stat()
    os.utime(tor, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    clock.now = 10.0
    assert lists.categories("192.0.2.1") == {"bad", "tor"}
    assert lists.categories("203.0.113.9") == {"hosting"}


def test_an_unparsable_list_fails_closed_until_fixed(tmp_path: Path) -> None:
    listed = tmp_path / "anonymizer.txt"
    listed.write_text("203.0.113.0/24\nnot-a-network\n")
    clock = Clock()
    lists = CidrLists(tmp_path, check_seconds=1.0, monotonic=clock)
    with pytest.raises(ReputationUnavailableError, match=r"anonymizer\.txt:2"):
        lists.categories("203.0.113.1")
    listed.write_text("203.0.113.0/24\n")
    stat = listed.stat()
    os.utime(listed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    clock.now = 1.0
    assert lists.categories("203.0.113.1") == {"anonymizer"}


def test_no_directory_means_no_lists() -> None:
    assert CidrLists(None).categories("203.0.113.1") == frozenset()


@pytest.mark.parametrize(
    ("user_agent", "browser", "os_name", "device_type"),
    [
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0.0.0 Safari/537.36",
            "Chrome 120.0",
            "Windows 10",
            "desktop",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 13_3 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/13.0.4 Mobile/15E148 Safari/604.1",
            "Mobile Safari 13.0",
            "iOS 13.3",
            "mobile",
        ),
        ("Googlebot/2.1 (+http://www.google.com/bot.html)", "Googlebot 2.1", "", "bot"),
        ("", "", "", "unknown"),
    ],
)
def test_user_agent_hierarchy(
    user_agent: str, browser: str, os_name: str, device_type: str
) -> None:
    agent = UaParser().parse(user_agent)
    assert (agent.browser, agent.os, agent.device_type) == (browser, os_name, device_type)
    assert agent.user_agent == user_agent
