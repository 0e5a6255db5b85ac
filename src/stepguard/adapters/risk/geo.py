"""IP geolocation for the risk engine: an operator's ``.mmdb`` files, or ``geoip2fast``.

With ``.mmdb`` files configured (MaxMind GeoLite2/GeoIP2 City or Country, GeoLite2 ASN, DB-IP
lite, or one combined file), every file is read and the first non-empty value of each field
wins: country (``country.iso_code``), ASN (``autonomous_system_number``), city
(``city.names.en``) and coordinates (``location.latitude/longitude``). Without any, the
bundled ``geoip2fast`` database gives the country (and the ASN name when its data file has
one), no coordinates.

Fail closed: a configured file that is missing or corrupt is not skipped: every lookup raises
:class:`GeoUnavailableError`, which the engine turns into a degraded assessment. Lookups are
cached per address (bounded).
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stepguard.core.risk.features import Place


class GeoUnavailableError(RuntimeError):
    """The geolocation source cannot answer."""


class _Cache:
    __slots__ = ("_items", "_size")

    def __init__(self, size: int) -> None:
        self._items: OrderedDict[str, Place] = OrderedDict()
        self._size = size

    def get(self, ip: str) -> Place | None:
        return self._items.get(ip)

    def put(self, ip: str, place: Place) -> None:
        self._items[ip] = place
        if len(self._items) > self._size:
            self._items.popitem(last=False)


def _text(record: Any, *path: str) -> str:
    for step in path:
        if not isinstance(record, dict):
            return ""
        record = record.get(step)
    if isinstance(record, int) and not isinstance(record, bool):
        return str(record)
    return record if isinstance(record, str) else ""


def _number(record: Any, *path: str) -> float | None:
    for step in path:
        if not isinstance(record, dict):
            return None
        record = record.get(step)
    if isinstance(record, int | float) and not isinstance(record, bool):
        return float(record)
    return None


class MaxMindGeo:
    """Reads one or more operator-supplied ``.mmdb`` files with ``maxminddb``."""

    def __init__(self, paths: Sequence[Path], *, cache_size: int = 65536) -> None:
        import maxminddb

        self._readers: list[Any] = []
        self._error: str | None = None
        self._cache = _Cache(cache_size)
        for path in paths:
            try:
                self._readers.append(maxminddb.open_database(str(path)))
            except (OSError, ValueError, maxminddb.InvalidDatabaseError) as error:
                self._error = f"{path}: {type(error).__name__}"

    def locate(self, ip: str) -> Place:
        if self._error is not None:
            raise GeoUnavailableError(self._error)
        cached = self._cache.get(ip)
        if cached is not None:
            return cached
        ipaddress.ip_address(ip)  # ValueError for a malformed address
        country = asn = city = ""
        latitude = longitude = None
        try:
            for reader in self._readers:
                record = reader.get(ip)
                if not isinstance(record, dict):
                    continue
                country = country or _text(record, "country", "iso_code")
                asn = asn or _text(record, "autonomous_system_number")
                city = city or _text(record, "city", "names", "en")
                if latitude is None:
                    latitude = _number(record, "location", "latitude")
                    longitude = _number(record, "location", "longitude")
        except ValueError:
            raise
        except Exception as error:  # a corrupt data section, a closed reader
            raise GeoUnavailableError(type(error).__name__) from error
        if latitude is None or longitude is None:
            latitude = longitude = None
        place = Place(country=country, asn=asn, city=city, latitude=latitude, longitude=longitude)
        self._cache.put(ip, place)
        return place


class BundledGeo:
    """``geoip2fast``'s bundled data: country (and ASN name if present), no coordinates."""

    def __init__(self, *, cache_size: int = 65536) -> None:
        from geoip2fast import GeoIP2Fast

        self._geo = GeoIP2Fast(verbose=False)
        self._cache = _Cache(cache_size)

    def locate(self, ip: str) -> Place:
        cached = self._cache.get(ip)
        if cached is not None:
            return cached
        ipaddress.ip_address(ip)
        result = self._geo.lookup(ip)
        country = result.country_code if len(result.country_code) == 2 else ""
        country = "" if country == "--" else country
        place = Place(country=country, asn=result.asn_name or "")
        self._cache.put(ip, place)
        return place


def geo_locator(paths: Sequence[Path]) -> MaxMindGeo | BundledGeo:
    return MaxMindGeo(paths) if paths else BundledGeo()
