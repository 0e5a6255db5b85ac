"""Simulated per-user login histories in the RBA dataset's columns, with injected attacks.

The output is a CSV in the columns of the public RBA login dataset (Wiefling et al., "Pump Up
Password Security! Evaluating and Enhancing Risk-Based Authentication on a Real-World
Large-Scale Online Service", ACM TOPS 2022, doi:10.1145/3546069; data:
https://github.com/das-group/rba-dataset) plus a ``Learn`` column, and a ground-truth CSV
(``index, is_attack, attacker_class, history_size_at_that_point, user_id,
login_successful``). Same seed, same bytes.

What a simulated user looks like:

- a home country, region and city, and a home ISP (ASN) whose /16 hands the user an address
  that changes now and then (DHCP churn; one ISP in three gives near-static addresses);
- a mobile carrier whose customers share a small pool of NAT addresses (carrier-grade NAT),
  used from phones and tablets, and while roaming abroad;
- for about a third of users, a shared office or university network (a few NAT addresses
  shared by everyone there), used from desktops on weekdays during working hours;
- a few devices (1 to 4), each a consistent user-agent string, browser and version, OS and
  version, device type; browsers and OSes upgrade along the real 2020 release trains with a
  per-device lag; some devices are replaced or added during the year;
- occasional travel (a Poisson number of trips of 2 to 14 days): hotel networks of another
  country, or the home carrier while roaming;
- a few users on a commercial VPN (hosting ASNs) for part of their logins;
- heavy-tailed login counts (log-normal, median 45 over the year), daily rhythms in local
  time, and failed attempts (typos) just before some successful logins.

Attacks (Freeman et al., NDSS 2016; Wiefling et al. 2022) are injected at random points of
victims' histories, spread over the history-size buckets 1-2, 3-9, 10-49 and 50+ prior
successful logins. Attack rows are ``Login Successful=True`` (the attacker has the password)
and ``Learn=False`` (they never train the model). Optionally
(``SimulationConfig.attacker_failure_rate``), some attacks are preceded by failed attempts
(``Login Successful=False``, ``Learn=False``, ``is_attack=1`` in the truth file):

- ``naive``: a random country (uniform over every country the simulator knows), a random
  network there, a random browser/OS/device from the population;
- ``vpn``: the victim's country, a network (hosting/VPN or another ISP) the victim never used,
  a random browser/OS/device from the population;
- ``targeted``: the victim's country, region and city (an ISP of that country) and the
  browser family of the victim's main device, at the current version; OS and device type
  drawn from the population among those that run that browser;
- ``very_targeted``: as targeted, plus the victim's OS (and version) and device type; the
  phone model, when the UA carries one, is a guess.

Marginals (the ``*_SHARES`` tables below) and their sources: the paper's own per-feature
share tables were not reachable from this machine, so the shares are APPROXIMATIONS. What is
anchored in published numbers: the continent split of the RBA dataset's login attempts
(Europe 18.91M, Americas 10.24M, Asia 1.53M, Oceania 0.44M, Africa 0.16M of 31.27M, as tabulated
in a public analysis notebook of the dataset), the service being Norwegian (Norway the largest
single country), and the dataset's device-type vocabulary (mobile, desktop, tablet, bot,
unknown). Within continents, and for OS, browser and device-type shares, the tables use
2020 web-traffic shares of the kind StatCounter publishes, tilted towards a Norwegian user
base (many iPhones). They shape the global (population) probabilities the Freeman model
divides by, so they matter for absolute numbers; the model comparison at equal data does not
depend on them being exact.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import dataclasses
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

T = TypeVar("T")

START: Final = datetime(2020, 2, 3, tzinfo=UTC)
DAYS: Final = 365
SECONDS_PER_DAY: Final = 86_400.0

COLUMNS: Final = (
    "index",
    "Login Timestamp",
    "User ID",
    "Round-Trip Time [ms]",
    "IP Address",
    "Country",
    "Region",
    "City",
    "ASN",
    "User Agent String",
    "Browser Name and Version",
    "OS Name and Version",
    "Device Type",
    "Login Successful",
    "Learn",
)
TRUTH_COLUMNS: Final = (
    "index",
    "is_attack",
    "attacker_class",
    "history_size_at_that_point",
    "user_id",
    "login_successful",
)
ATTACKER_CLASSES: Final = ("naive", "vpn", "targeted", "very_targeted")
# Prior successful logins of the victim: (lowest, highest or None for open-ended).
HISTORY_BUCKETS: Final[tuple[tuple[int, int | None], ...]] = ((1, 2), (3, 9), (10, 49), (50, None))


def bucket_label(bucket: tuple[int, int | None]) -> str:
    low, high = bucket
    return f"{low}+" if high is None else f"{low}-{high}"


def bucket_of(history: int) -> tuple[int, int | None] | None:
    for bucket in HISTORY_BUCKETS:
        low, high = bucket
        if history >= low and (high is None or history <= high):
            return bucket
    return None


# --- marginals (approximate; see the module docstring) -----------------------------------

Place = tuple[str, str]  # (region, city)

# code: (share of users' home countries, continent, UTC offset in hours, places)
# Continent sums: Europe .605, Americas .327, Asia .049, Oceania .014, Africa .005, which is
# the RBA dataset's continent split of login attempts.
HOME_COUNTRY_SHARES: Final[dict[str, tuple[float, str, float, tuple[Place, ...]]]] = {
    "NO": (
        0.400,
        "Europe",
        1,
        (
            ("Oslo", "Oslo"),
            ("Viken", "Drammen"),
            ("Vestland", "Bergen"),
            ("Trøndelag", "Trondheim"),
            ("Rogaland", "Stavanger"),
            ("Agder", "Kristiansand"),
            ("Innlandet", "Hamar"),
            ("Vestfold og Telemark", "Tønsberg"),
            ("Møre og Romsdal", "Ålesund"),
            ("Nordland", "Bodø"),
            ("Troms og Finnmark", "Tromsø"),
        ),
    ),
    "SE": (0.040, "Europe", 1, (("Stockholm", "Stockholm"), ("Västra Götaland", "Gothenburg"))),
    "DK": (0.025, "Europe", 1, (("Capital Region", "Copenhagen"), ("Central Jutland", "Aarhus"))),
    "DE": (
        0.030,
        "Europe",
        1,
        (("Berlin", "Berlin"), ("Bavaria", "Munich"), ("Hamburg", "Hamburg")),
    ),
    "GB": (
        0.030,
        "Europe",
        0,
        (("England", "London"), ("England", "Manchester"), ("Scotland", "Edinburgh")),
    ),
    "PL": (0.020, "Europe", 1, (("Mazovia", "Warsaw"), ("Lesser Poland", "Kraków"))),
    "FR": (0.015, "Europe", 1, (("Île-de-France", "Paris"), ("Auvergne-Rhône-Alpes", "Lyon"))),
    "NL": (0.015, "Europe", 1, (("North Holland", "Amsterdam"), ("South Holland", "Rotterdam"))),
    "ES": (0.010, "Europe", 1, (("Madrid", "Madrid"), ("Catalonia", "Barcelona"))),
    "IT": (0.010, "Europe", 1, (("Lazio", "Rome"), ("Lombardy", "Milan"))),
    "RU": (0.010, "Europe", 3, (("Moscow", "Moscow"), ("St.-Petersburg", "Saint Petersburg"))),
    "US": (
        0.220,
        "Americas",
        -5,
        (
            ("New York", "New York"),
            ("California", "Los Angeles"),
            ("Texas", "Houston"),
            ("Illinois", "Chicago"),
            ("Florida", "Miami"),
            ("Washington", "Seattle"),
            ("Minnesota", "Minneapolis"),
        ),
    ),
    "BR": (
        0.050,
        "Americas",
        -3,
        (("Sao Paulo", "São Paulo"), ("Rio de Janeiro", "Rio de Janeiro")),
    ),
    "CA": (
        0.025,
        "Americas",
        -5,
        (("Ontario", "Toronto"), ("Quebec", "Montreal"), ("British Columbia", "Vancouver")),
    ),
    "MX": (0.012, "Americas", -6, (("Mexico City", "Mexico City"), ("Jalisco", "Guadalajara"))),
    "AR": (0.010, "Americas", -3, (("Buenos Aires F.D.", "Buenos Aires"), ("Cordoba", "Córdoba"))),
    "CL": (
        0.010,
        "Americas",
        -4,
        (("Santiago Metropolitan", "Santiago"), ("Valparaíso", "Valparaíso")),
    ),
    "IN": (
        0.012,
        "Asia",
        5.5,
        (("Maharashtra", "Mumbai"), ("Karnataka", "Bengaluru"), ("Delhi", "New Delhi")),
    ),
    "ID": (0.008, "Asia", 7, (("Jakarta", "Jakarta"), ("East Java", "Surabaya"))),
    "JP": (0.006, "Asia", 9, (("Tokyo", "Tokyo"), ("Osaka", "Osaka"))),
    "TH": (0.005, "Asia", 7, (("Bangkok", "Bangkok"), ("Chiang Mai", "Chiang Mai"))),
    "PK": (0.005, "Asia", 5, (("Sindh", "Karachi"), ("Punjab", "Lahore"))),
    "MY": (0.005, "Asia", 8, (("Kuala Lumpur", "Kuala Lumpur"), ("Penang", "George Town"))),
    "KR": (0.004, "Asia", 9, (("Seoul", "Seoul"), ("Busan", "Busan"))),
    "CN": (0.004, "Asia", 8, (("Beijing", "Beijing"), ("Shanghai", "Shanghai"))),
    "AU": (0.011, "Oceania", 10, (("New South Wales", "Sydney"), ("Victoria", "Melbourne"))),
    "NZ": (0.003, "Oceania", 12, (("Auckland", "Auckland"), ("Wellington", "Wellington"))),
    "ZA": (0.003, "Africa", 2, (("Gauteng", "Johannesburg"), ("Western Cape", "Cape Town"))),
    "NG": (0.002, "Africa", 1, (("Lagos", "Lagos"), ("FCT", "Abuja"))),
}
# Countries no simulated user lives in: travel destinations and naive attackers' origins.
OTHER_COUNTRIES: Final[dict[str, tuple[str, Place]]] = {
    "GR": ("Europe", ("Attica", "Athens")),
    "PT": ("Europe", ("Lisbon", "Lisbon")),
    "RO": ("Europe", ("Bucharest", "Bucharest")),
    "UA": ("Europe", ("Kyiv City", "Kyiv")),
    "LT": ("Europe", ("Vilnius", "Vilnius")),
    "TR": ("Asia", ("Istanbul", "Istanbul")),
    "VN": ("Asia", ("Hanoi", "Hanoi")),
    "PH": ("Asia", ("Metro Manila", "Manila")),
    "BD": ("Asia", ("Dhaka", "Dhaka")),
    "SG": ("Asia", ("Singapore", "Singapore")),
    "HK": ("Asia", ("Central and Western", "Hong Kong")),
    "IR": ("Asia", ("Tehran", "Tehran")),
    "EG": ("Africa", ("Cairo", "Cairo")),
    "KE": ("Africa", ("Nairobi", "Nairobi")),
    "CO": ("Americas", ("Bogota D.C.", "Bogotá")),
    "PE": ("Americas", ("Lima", "Lima")),
}
TRAVEL_WEIGHTS: Final[dict[str, float]] = {
    "ES": 6, "SE": 4, "NO": 4, "DK": 3, "GB": 3, "DE": 3, "US": 3, "GR": 3, "IT": 2.5,
    "FR": 2.5, "PT": 2, "PL": 1.5, "NL": 1.5, "TH": 1.5, "BR": 0.5, "JP": 0.5, "AU": 0.3,
}  # fmt: skip
CONTINENT_RTT_MS: Final[dict[str, float]] = {
    "Europe": 45, "Americas": 140, "Asia": 260, "Oceania": 320, "Africa": 210,
}  # fmt: skip

# The RBA dataset's device-type vocabulary; shares per device (not per login), approximate.
DEVICE_TYPE_SHARES: Final = (("mobile", 0.58), ("desktop", 0.34), ("tablet", 0.06), ("bot", 0.02))
OS_SHARES: Final[dict[str, tuple[tuple[str, float], ...]]] = {
    "mobile": (("iOS", 0.45), ("Android", 0.55)),
    "tablet": (("iOS", 0.70), ("Android", 0.30)),
    "desktop": (("Windows", 0.70), ("Mac OS X", 0.22), ("Linux", 0.05), ("Ubuntu", 0.03)),
    "bot": (("Other", 1.0),),
}
BROWSER_SHARES: Final[dict[str, tuple[tuple[str, float], ...]]] = {
    "iOS": (("Mobile Safari", 0.82), ("Chrome Mobile iOS", 0.13), ("Firefox iOS", 0.05)),
    "Android": (
        ("Chrome Mobile", 0.70),
        ("Samsung Internet", 0.14),
        ("Chrome Mobile WebView", 0.11),
        ("Firefox Mobile", 0.05),
    ),
    "Windows": (("Chrome", 0.62), ("Edge", 0.20), ("Firefox", 0.14), ("IE", 0.04)),
    "Mac OS X": (("Safari", 0.52), ("Chrome", 0.40), ("Firefox", 0.08)),
    "Linux": (("Chrome", 0.60), ("Firefox", 0.40)),
    "Ubuntu": (("Firefox", 1.0),),
    "Other": (("Python Requests", 1.0),),
}
# Browser family as an attacker who knows "the victim uses Chrome" would copy it.
BROWSER_FAMILY: Final[dict[str, str]] = {
    "Mobile Safari": "Safari", "Safari": "Safari", "Chrome Mobile iOS": "Chrome",
    "Chrome Mobile": "Chrome", "Chrome Mobile WebView": "Chrome", "Chrome": "Chrome",
    "Samsung Internet": "Samsung Internet", "Firefox iOS": "Firefox", "Firefox Mobile": "Firefox",
    "Firefox": "Firefox", "Edge": "Edge", "IE": "IE", "Python Requests": "Python Requests",
}  # fmt: skip
WINDOWS_SHARES: Final = (("10", 0.85), ("7", 0.10), ("8.1", 0.05))
WINDOWS_TOKENS: Final = {"10": "Windows NT 10.0", "7": "Windows NT 6.1", "8.1": "Windows NT 6.3"}
ANDROID_SHARES: Final = (
    ("10", 0.42), ("9", 0.25), ("8.1", 0.12), ("8.0", 0.05), ("7.0", 0.09), ("6.0", 0.07),
)  # fmt: skip
ANDROID_UA_TOKENS: Final = {
    "11": "11", "10": "10", "9": "9", "8.1": "8.1.0", "8.0": "8.0.0", "7.0": "7.0", "6.0": "6.0.1",
}  # fmt: skip
ANDROID_PHONES: Final = (
    "SM-G973F", "SM-G960F", "SM-A505FN", "SM-A515F", "SM-G975F", "Pixel 3a", "Pixel 4",
    "ONEPLUS A6013", "Redmi Note 8 Pro", "moto g(7) power", "CLT-L29", "Nokia 7.2",
)  # fmt: skip
ANDROID_TABLETS: Final = ("SM-T510", "SM-P610", "SM-T720", "Lenovo TB-X505F")


# --- release trains (real 2020 dates; versions as the UA and the parser show them) --------


def _day(year: int, month: int, day: int) -> float:
    return (datetime(year, month, day, tzinfo=UTC) - START).total_seconds() / SECONDS_PER_DAY


# (day, major, build, patch) for Chrome; Edge shares the majors with its own build numbers.
CHROME_TRAIN: Final = (
    (_day(2019, 12, 10), 79, 3945, 130),
    (_day(2020, 2, 4), 80, 3987, 149),
    (_day(2020, 4, 7), 81, 4044, 138),
    (_day(2020, 5, 19), 83, 4103, 116),
    (_day(2020, 7, 14), 84, 4147, 135),
    (_day(2020, 8, 25), 85, 4183, 121),
    (_day(2020, 10, 6), 86, 4240, 198),
    (_day(2020, 11, 17), 87, 4280, 88),
    (_day(2021, 1, 19), 88, 4324, 150),
    (_day(2021, 3, 2), 89, 4389, 90),
)
EDGE_BUILDS: Final = {
    79: 309, 80: 361, 81: 416, 83: 478, 84: 522, 85: 564, 86: 622, 87: 664, 88: 705, 89: 774,
}  # fmt: skip
FIREFOX_TRAIN: Final = tuple(
    (_day(y, m, d), major)
    for (y, m, d), major in (
        ((2020, 1, 7), 72), ((2020, 2, 11), 73), ((2020, 3, 10), 74), ((2020, 4, 7), 75),
        ((2020, 5, 5), 76), ((2020, 6, 2), 77), ((2020, 6, 30), 78), ((2020, 7, 28), 79),
        ((2020, 8, 25), 80), ((2020, 9, 22), 81), ((2020, 10, 20), 82), ((2020, 11, 17), 83),
        ((2020, 12, 15), 84), ((2021, 1, 26), 85), ((2021, 2, 23), 86),
    )
)  # fmt: skip
FIREFOX_IOS_TRAIN: Final = tuple(
    (_day(y, m, d), major)
    for (y, m, d), major in (
        ((2020, 1, 1), 22), ((2020, 3, 1), 23), ((2020, 4, 15), 25), ((2020, 6, 1), 26),
        ((2020, 7, 15), 28), ((2020, 9, 16), 29), ((2020, 11, 1), 30), ((2021, 1, 1), 31),
    )
)  # fmt: skip
# (day, iOS version, Mobile Safari version)
IOS_TRAIN: Final = tuple(
    (_day(y, m, d), ios, safari)
    for (y, m, d), ios, safari in (
        ((2019, 12, 10), "13.3", "13.0.4"), ((2020, 3, 24), "13.4", "13.1"),
        ((2020, 5, 20), "13.5", "13.1.1"), ((2020, 7, 15), "13.6", "13.1.2"),
        ((2020, 9, 16), "14.0", "14.0"), ((2020, 11, 5), "14.2", "14.0.1"),
        ((2020, 12, 14), "14.3", "14.0.2"), ((2021, 1, 26), "14.4", "14.0.3"),
    )
)  # fmt: skip
# (day, macOS version as the UA reports it, Safari version). Big Sur still says 10_15_7.
MACOS_TRAIN: Final = tuple(
    (_day(y, m, d), mac, safari)
    for (y, m, d), mac, safari in (
        ((2020, 1, 28), "10.15.3", "13.0.5"), ((2020, 3, 24), "10.15.4", "13.1"),
        ((2020, 5, 26), "10.15.5", "13.1.1"), ((2020, 7, 15), "10.15.6", "13.1.2"),
        ((2020, 9, 24), "10.15.7", "14.0"), ((2020, 11, 12), "10.15.7", "14.0.1"),
        ((2020, 12, 14), "10.15.7", "14.0.2"), ((2021, 2, 1), "10.15.7", "14.0.3"),
    )
)  # fmt: skip
# (day, Samsung Internet version, the Chrome version its UA carries)
SAMSUNG_TRAIN: Final = tuple(
    (_day(y, m, d), version, chrome)
    for (y, m, d), version, chrome in (
        ((2019, 12, 1), "10.2", "71.0.3578.99"), ((2020, 3, 1), "11.0", "75.0.3770.143"),
        ((2020, 5, 1), "11.2", "75.0.3770.143"), ((2020, 7, 1), "12.0", "79.0.3945.136"),
        ((2020, 9, 15), "12.1", "79.0.3945.136"), ((2020, 11, 15), "13.0", "83.0.4103.106"),
        ((2021, 1, 15), "13.2", "83.0.4103.106"),
    )
)  # fmt: skip
REQUESTS_TRAIN: Final = tuple(
    (_day(y, m, d), version)
    for (y, m, d), version in (
        ((2020, 1, 1), "2.23.0"), ((2020, 6, 17), "2.24.0"), ((2020, 11, 11), "2.25.0"),
        ((2020, 12, 16), "2.25.1"),
    )
)  # fmt: skip
ANDROID_11_DAY: Final = _day(2020, 9, 8)


def _at(train: Sequence[tuple[Any, ...]], day: float) -> int:
    """Index of the release in force on ``day`` (the first one before the train starts)."""
    return max(0, bisect.bisect_right([entry[0] for entry in train], day) - 1)


# --- devices ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    """One client a user logs in from. Versions follow the release trains ``lag`` days late."""

    kind: str  # device type: mobile, desktop, tablet, bot
    os_name: str  # iOS, Android, Windows, Mac OS X, Linux, Ubuntu, Other
    os_pin: str  # Android/Windows version; "" follows the train; a macOS/iOS pin stays put
    browser: str
    model: str  # Android model, "iPhone", "iPad", or ""
    lag: float  # days behind the release train
    android_11_day: float | None = None  # when an Android 10 device upgrades to 11

    def render(self, day: float) -> tuple[str, str, str, str]:
        """(User Agent String, Browser Name and Version, OS Name and Version, Device Type)."""
        when = day - self.lag
        os_label, os_token = self._os(when)
        ua, browser_label = self._browser(when, os_token)
        return ua, browser_label, os_label, self.kind

    def _os(self, when: float) -> tuple[str, str]:
        if self.os_name == "iOS":
            ios = self.os_pin or str(IOS_TRAIN[_at(IOS_TRAIN, when)][1])
            return f"iOS {ios}", ios.replace(".", "_")
        if self.os_name == "Android":
            version = self.os_pin
            if self.android_11_day is not None and when >= self.android_11_day:
                version = "11"
            return f"Android {version}", version
        if self.os_name == "Windows":
            return f"Windows {self.os_pin}", WINDOWS_TOKENS[self.os_pin]
        if self.os_name == "Mac OS X":
            mac = self.os_pin or str(MACOS_TRAIN[_at(MACOS_TRAIN, when)][1])
            return f"Mac OS X {mac}", mac.replace(".", "_")
        if self.os_name in ("Linux", "Ubuntu"):
            return self.os_name, ""
        return "Other", ""

    def _browser(self, when: float, os_token: str) -> tuple[str, str]:
        _, major, build, patch = CHROME_TRAIN[_at(CHROME_TRAIN, when)]
        chrome = f"{major}.0.{build}.{patch}"
        chrome_label = f"{major}.0.{build}"
        firefox = int(FIREFOX_TRAIN[_at(FIREFOX_TRAIN, when)][1])
        webkit = "AppleWebKit/537.36 (KHTML, like Gecko)"
        apple = "AppleWebKit/605.1.15 (KHTML, like Gecko)"
        name = self.browser
        if self.os_name == "iOS":
            device = "iPhone; CPU iPhone OS" if self.kind == "mobile" else "iPad; CPU OS"
            platform = f"Mozilla/5.0 ({device} {os_token} like Mac OS X) {apple}"
            if name == "Mobile Safari":
                safari = "12.1.2" if self.os_pin else str(IOS_TRAIN[_at(IOS_TRAIN, when)][2])
                return f"{platform} Version/{safari} Mobile/15E148 Safari/604.1", f"{name} {safari}"
            if name == "Chrome Mobile iOS":
                return (
                    f"{platform} CriOS/{chrome} Mobile/15E148 Safari/604.1",
                    f"{name} {chrome_label}",
                )
            fxios = int(FIREFOX_IOS_TRAIN[_at(FIREFOX_IOS_TRAIN, when)][1])
            return f"{platform} FxiOS/{fxios}.0 Mobile/15E148 Safari/605.1.15", f"{name} {fxios}.0"
        if self.os_name == "Android":
            ua_android = ANDROID_UA_TOKENS[os_token]
            mobile = " Mobile" if self.kind == "mobile" else ""
            if name == "Chrome Mobile":
                return (
                    f"Mozilla/5.0 (Linux; Android {ua_android}; {self.model}) {webkit} "
                    f"Chrome/{chrome}{mobile} Safari/537.36",
                    f"{name} {chrome_label}",
                )
            if name == "Chrome Mobile WebView":
                return (
                    f"Mozilla/5.0 (Linux; Android {ua_android}; {self.model}; wv) {webkit} "
                    f"Version/4.0 Chrome/{chrome}{mobile} Safari/537.36",
                    f"{name} {chrome_label}",
                )
            if name == "Samsung Internet":
                _, samsung, samsung_chrome = SAMSUNG_TRAIN[_at(SAMSUNG_TRAIN, when)]
                return (
                    f"Mozilla/5.0 (Linux; Android {ua_android}; {self.model}) {webkit} "
                    f"SamsungBrowser/{samsung} Chrome/{samsung_chrome}{mobile} Safari/537.36",
                    f"{name} {samsung}",
                )
            form = "Mobile" if self.kind == "mobile" else "Tablet"
            return (
                f"Mozilla/5.0 (Android {ua_android}; {form}; rv:{firefox}.0) "
                f"Gecko/{firefox}.0 Firefox/{firefox}.0",
                f"{name} {firefox}.0",
            )
        if self.os_name in ("Windows", "Mac OS X", "Linux", "Ubuntu"):
            if self.os_name == "Windows":
                platform = f"{os_token}; Win64; x64"
            elif self.os_name == "Mac OS X":
                platform = f"Macintosh; Intel Mac OS X {os_token}"
            elif self.os_name == "Linux":
                platform = "X11; Linux x86_64"
            else:
                platform = "X11; Ubuntu; Linux x86_64"
            if name == "Chrome":
                return (
                    f"Mozilla/5.0 ({platform}) {webkit} Chrome/{chrome} Safari/537.36",
                    f"Chrome {chrome_label}",
                )
            if name == "Edge":
                edge = EDGE_BUILDS[major]
                return (
                    f"Mozilla/5.0 ({platform}) {webkit} Chrome/{chrome} Safari/537.36 "
                    f"Edg/{major}.0.{edge}.{patch % 97}",
                    f"Edge {major}.0.{edge}",
                )
            if name == "Firefox":
                return (
                    f"Mozilla/5.0 ({platform}; rv:{firefox}.0) Gecko/20100101 Firefox/{firefox}.0",
                    f"Firefox {firefox}.0",
                )
            if name == "IE":
                return (
                    f"Mozilla/5.0 ({os_token}; WOW64; Trident/7.0; rv:11.0) like Gecko",
                    "IE 11.0",
                )
            safari = str(MACOS_TRAIN[_at(MACOS_TRAIN, when)][2])
            return (
                f"Mozilla/5.0 ({platform}) {apple} Version/{safari} Safari/605.1.15",
                f"Safari {safari}",
            )
        requests = str(REQUESTS_TRAIN[_at(REQUESTS_TRAIN, when)][1])
        return f"python-requests/{requests}", f"Python Requests {requests.rsplit('.', 1)[0]}"


def _pick(rng: random.Random, table: Sequence[tuple[T, float]]) -> T:
    values = [value for value, _ in table]
    weights = [weight for _, weight in table]
    return rng.choices(values, weights)[0]


def random_device(
    rng: random.Random,
    *,
    kind: str | None = None,
    os_name: str | None = None,
    browser: str | None = None,
    lag: float | None = None,
) -> Device:
    """A device drawn from the population marginals, optionally with some fields fixed."""
    kind = kind or _pick(rng, DEVICE_TYPE_SHARES)
    os_name = os_name or _pick(rng, OS_SHARES[kind])
    browser = browser or _pick(rng, BROWSER_SHARES[os_name])
    os_pin = ""
    model = ""
    android_11_day: float | None = None
    if os_name == "Android":
        os_pin = _pick(rng, ANDROID_SHARES)
        model = rng.choice(ANDROID_PHONES if kind == "mobile" else ANDROID_TABLETS)
        if os_pin == "10" and rng.random() < 0.35:
            android_11_day = ANDROID_11_DAY + rng.uniform(0, 150)
    elif os_name == "Windows":
        os_pin = _pick(rng, WINDOWS_SHARES)
    elif os_name == "iOS":
        os_pin = "12.4" if rng.random() < 0.08 else ""  # devices that cannot run iOS 13
        model = "iPhone" if kind == "mobile" else "iPad"
    elif os_name == "Mac OS X":
        os_pin = _pick(rng, (("", 0.75), ("10.14.6", 0.17), ("10.13.6", 0.08)))
    if lag is None:
        lag = rng.expovariate(1 / 12) if rng.random() < 0.85 else rng.uniform(30, 200)
    return Device(
        kind=kind,
        os_name=os_name,
        os_pin=os_pin,
        browser=browser,
        model=model,
        lag=lag,
        android_11_day=android_11_day,
    )


# --- networks -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Network:
    asn: int
    country: str
    kind: str  # residential, mobile, university, corporate, hosting
    prefix: tuple[int, int]  # a /16
    pool: int  # NAT pool size (shared addresses); 0: one address per customer
    place: Place | None  # where geolocation puts it; None: the customer's own place
    churn_days: float = 0.0  # residential: mean days between address changes

    def address(self, rng: random.Random) -> str:
        a, b = self.prefix
        if self.pool:
            slot = rng.randrange(self.pool)
            return f"{a}.{b}.{slot // 250}.{slot % 250 + 1}"
        return f"{a}.{b}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


@dataclass(slots=True)
class World:
    networks: dict[str, dict[str, list[Network]]] = field(default_factory=dict)

    def of(self, country: str, kind: str) -> list[Network]:
        return self.networks[country][kind]


RESIDENTIAL_WEIGHTS: Final = (0.5, 0.3, 0.2)
MOBILE_WEIGHTS: Final = (0.6, 0.4)


def places_of(country: str) -> tuple[Place, ...]:
    if country in HOME_COUNTRY_SHARES:
        return HOME_COUNTRY_SHARES[country][3]
    return (OTHER_COUNTRIES[country][1],)


def continent_of(country: str) -> str:
    if country in HOME_COUNTRY_SHARES:
        return HOME_COUNTRY_SHARES[country][1]
    return OTHER_COUNTRIES[country][0]


def build_world(rng: random.Random) -> World:
    """Every country's networks: 3 ISPs, 2 carriers, 1 university, 3 companies, 2 hosts."""
    bad_first = {10, 100, 127, 169, 172, 192, 198, 203}
    prefixes = [(a, b) for a in range(11, 224) if a not in bad_first for b in range(256)]
    rng.shuffle(prefixes)
    asns = rng.sample(range(1000, 400_000), 2000)
    world = World()

    def make(
        country: str, kind: str, pool: int, place: Place | None, churn: float = 0.0
    ) -> Network:
        return Network(
            asn=asns.pop(),
            country=country,
            kind=kind,
            prefix=prefixes.pop(),
            pool=pool,
            place=place,
            churn_days=churn,
        )

    for country in (*HOME_COUNTRY_SHARES, *OTHER_COUNTRIES):
        places = places_of(country)
        churns = [rng.choice((30.0, 60.0, 400.0)) for _ in RESIDENTIAL_WEIGHTS]
        world.networks[country] = {
            "residential": [make(country, "residential", 0, None, c) for c in churns],
            "mobile": [make(country, "mobile", 500, places[0]) for _ in MOBILE_WEIGHTS],
            "university": [make(country, "university", 16, places[0])],
            "corporate": [make(country, "corporate", 6, rng.choice(places)) for _ in range(3)],
            "hosting": [make(country, "hosting", 2000, places[0]) for _ in range(2)],
        }
    return world


# --- users and their logins ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulationConfig:
    users: int = 2000
    seed: int = 1
    attacks_per_cell: int = 250  # per attacker class and history bucket
    login_median: float = 45.0  # logins per user over the year (log-normal median)
    login_sigma: float = 1.2
    max_logins: int = 3000
    fail_rate: float = 0.07  # successful logins preceded by a failed attempt
    trips_per_year: float = 0.8
    # Attacks preceded by 1-3 failed attempts from the same network and client. The attacker
    # models of Freeman et al. have none (0, the default); credential stuffing often does.
    attacker_failure_rate: float = 0.0


@dataclass(slots=True)
class Row:
    ts: float  # seconds since START
    user: str
    rtt: str
    ip: str
    country: str
    region: str
    city: str
    asn: int
    ua: str
    browser: str
    os: str
    device_type: str
    success: bool
    learn: bool
    attack: str  # "" for legitimate rows
    history: int


@dataclass(slots=True)
class Profile:
    """What an attacker may know about a victim, and what the victim has used."""

    country: str
    place: Place
    main_device: Device
    used_asns: set[int]
    success_times: list[float]


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulationSummary:
    users: int
    rows: int
    legit_successful: int
    legit_failed: int
    attack_failed: int  # failed attacker attempts before an attack (not in ``attacks``)
    attacks: dict[tuple[str, str], int]  # (class, bucket label) -> count
    users_by_bucket: dict[str, int]  # users whose total successful logins fall in the bucket


def _rtt(rng: random.Random, network: Network) -> str:
    if rng.random() < 0.5:
        return ""  # the RBA dataset leaves most RTTs empty
    median = CONTINENT_RTT_MS[continent_of(network.country)]
    if network.kind == "mobile":
        median *= 1.5
    return str(max(1, round(median * math.exp(rng.gauss(0, 0.35)))))


DAILY_PEAKS: Final = ((8.0, 1.5), (12.5, 2.0), (20.0, 2.0))  # local hour: (mean, sd)


def _local_hour(rng: random.Random, weights: Sequence[float]) -> float:
    mean, sd = rng.choices(DAILY_PEAKS, weights)[0]
    return rng.gauss(mean, sd) % 24


def _user_rows(
    rng: random.Random, world: World, config: SimulationConfig, uid: str
) -> tuple[list[Row], Profile]:
    country = _pick(rng, [(code, spec[0]) for code, spec in HOME_COUNTRY_SHARES.items()])
    _, _, tz, places = HOME_COUNTRY_SHARES[country]
    place = places[0] if rng.random() < 0.3 else rng.choice(places)
    home = rng.choices(world.of(country, "residential"), RESIDENTIAL_WEIGHTS)[0]
    carrier = rng.choices(world.of(country, "mobile"), MOBILE_WEIGHTS)[0]
    shared: Network | None = None
    if rng.random() < 0.35:
        shared = rng.choice(
            world.of(country, "university")
            if rng.random() < 0.4
            else world.of(country, "corporate")
        )
    vpn: Network | None = None
    if rng.random() < 0.03:
        vpn_country = country if rng.random() < 0.5 else rng.choice(("NL", "US", "SE"))
        vpn = rng.choice(world.of(vpn_country, "hosting"))

    # Devices: (device, weight, active from day, active until day)
    count = _pick(rng, ((1, 0.45), (2, 0.35), (3, 0.15), (4, 0.05)))
    devices: list[tuple[Device, float, float, float]] = []
    for position in range(count):
        weight = rng.uniform(0.5, 0.9) if position == 0 else rng.uniform(0.05, 0.4)
        device = random_device(rng)
        begins = 0.0 if position == 0 or rng.random() < 0.8 else rng.uniform(0, DAYS)
        if rng.random() < 0.2:  # replaced during the year by a new device of the same kind
            switch = rng.uniform(begins, DAYS)
            devices.append((device, weight, begins, switch))
            same_os = rng.random() < 0.7
            replacement = random_device(
                rng, kind=device.kind, os_name=device.os_name if same_os else None
            )
            devices.append((replacement, weight, switch, DAYS))
        else:
            devices.append((device, weight, begins, DAYS))

    logins = min(
        config.max_logins,
        max(1, round(config.login_median * math.exp(rng.gauss(0, config.login_sigma)))),
    )
    first_day = 0.0 if rng.random() < 0.6 else rng.uniform(0, DAYS * 0.85)
    days = sorted(rng.uniform(first_day, DAYS) for _ in range(logins))
    trips: list[tuple[float, float, str, Place, Network]] = []
    for _ in range(_poisson(rng, config.trips_per_year)):
        destination = _pick(rng, [(c, w) for c, w in TRAVEL_WEIGHTS.items() if c != country])
        begins = rng.uniform(0, DAYS)
        hotel = rng.choice(world.of(destination, "residential"))
        trips.append(
            (
                begins,
                begins + rng.uniform(2, 14),
                destination,
                rng.choice(places_of(destination)),
                hotel,
            )
        )
    renewals: list[float] = []
    if home.churn_days:
        moment = rng.expovariate(1 / home.churn_days)
        while moment < DAYS:
            renewals.append(moment)
            moment += rng.expovariate(1 / home.churn_days)
    home_ips = [home.address(rng) for _ in range(len(renewals) + 1)]
    peaks = [rng.uniform(0.1, 1.0) for _ in DAILY_PEAKS]

    rows: list[Row] = []
    used: set[int] = set()
    successes: list[float] = []
    for day in days:
        local = _local_hour(rng, peaks)
        ts = (math.floor(day) + local / 24 - tz / 24) * SECONDS_PER_DAY
        if ts < 0:  # the first local day started before the first UTC day
            ts += SECONDS_PER_DAY
        ts = min(ts, DAYS * SECONDS_PER_DAY - 1)
        active = [(d, w) for d, w, begins, ends in devices if begins <= day < ends]
        device = rng.choices([d for d, _ in active], [w for _, w in active])[0]
        weekday = (START + timedelta(days=math.floor(day))).weekday() < 5
        trip = next((t for t in trips if t[0] <= day < t[1]), None)
        network: Network
        where: Place
        ip: str
        if trip is not None:
            if device.kind in ("mobile", "tablet") and rng.random() < 0.5:
                network, where, ip = carrier, carrier.place or place, carrier.address(rng)
            else:
                network, where, ip = trip[4], trip[3], trip[4].address(rng)
        elif (
            shared
            and weekday
            and 8 <= local <= 17
            and device.kind == "desktop"
            and rng.random() < 0.8
        ):
            network, where, ip = shared, shared.place or place, shared.address(rng)
        elif device.kind in ("mobile", "tablet") and rng.random() < 0.45:
            network, where, ip = carrier, carrier.place or place, carrier.address(rng)
        elif vpn and rng.random() < 0.3:
            network, where, ip = vpn, vpn.place or place, vpn.address(rng)
        else:
            network, where, ip = home, place, home_ips[bisect.bisect_right(renewals, day)]
        ua, browser, os_label, kind = device.render(day)
        login = Row(
            ts=ts,
            user=uid,
            rtt=_rtt(rng, network),
            ip=ip,
            country=network.country,
            region=where[0],
            city=where[1],
            asn=network.asn,
            ua=ua,
            browser=browser,
            os=os_label,
            device_type=kind,
            success=True,
            learn=True,
            attack="",
            history=0,  # set below, once the user's logins are in time order
        )
        if rng.random() < config.fail_rate:  # typos just before the successful login
            failures = 2 if rng.random() < 0.15 else 1
            for attempt in range(failures, 0, -1):
                at = max(0.0, ts - attempt * rng.uniform(5, 45))
                rows.append(dataclasses.replace(login, ts=at, success=False))
        rows.append(login)
        used.add(network.asn)
    rows.sort(key=lambda r: r.ts)
    for r in rows:
        r.history = len(successes)
        if r.success:
            successes.append(r.ts)
    main = max(devices, key=lambda entry: entry[1] * (entry[3] - entry[2]))[0]
    return rows, Profile(
        country=country, place=place, main_device=main, used_asns=used, success_times=successes
    )


def _poisson(rng: random.Random, mean: float) -> int:
    threshold, count, product = math.exp(-mean), 0, rng.random()
    while product > threshold:
        count += 1
        product *= rng.random()
    return count


def _attack_row(
    rng: random.Random, world: World, klass: str, uid: str, victim: Profile, ts: float, history: int
) -> Row:
    day = ts / SECONDS_PER_DAY
    if klass == "naive":
        country = rng.choice((*HOME_COUNTRY_SHARES, *OTHER_COUNTRIES))
        network = rng.choice(
            world.of(country, "residential")
            + world.of(country, "hosting")
            + world.of(country, "mobile")
        )
        where = network.place or rng.choice(places_of(country))
        device = random_device(rng, lag=0.0)
    elif klass == "vpn":
        candidates = [
            n
            for n in world.of(victim.country, "hosting") + world.of(victim.country, "residential")
            if n.asn not in victim.used_asns
        ]
        network = rng.choice(candidates or world.of("NL", "hosting"))
        where = network.place or rng.choice(places_of(victim.country))
        device = random_device(rng, lag=0.0)
    else:
        network = rng.choices(world.of(victim.country, "residential"), RESIDENTIAL_WEIGHTS)[0]
        where = victim.place
        main = victim.main_device
        family = BROWSER_FAMILY[main.browser]
        if klass == "targeted":
            device = _device_with_family(rng, family, main)
        else:  # the victim's own device, as far as a UA shows it; the phone model is a guess
            model = main.model
            if main.os_name == "Android":
                model = rng.choice(ANDROID_PHONES if main.kind == "mobile" else ANDROID_TABLETS)
            device = dataclasses.replace(main, model=model)
    ua, browser, os_label, kind = device.render(day)
    return Row(
        ts=ts,
        user=uid,
        rtt=_rtt(rng, network),
        ip=network.address(rng),
        country=network.country,
        region=where[0],
        city=where[1],
        asn=network.asn,
        ua=ua,
        browser=browser,
        os=os_label,
        device_type=kind,
        success=True,
        learn=False,
        attack=klass,
        history=history,
    )


def _device_with_family(rng: random.Random, family: str, fallback: Device) -> Device:
    for _ in range(200):
        device = random_device(rng, lag=0.0)
        if BROWSER_FAMILY[device.browser] == family:
            return device
    return random_device(
        rng, kind=fallback.kind, os_name=fallback.os_name, browser=fallback.browser, lag=0.0
    )


def _format_ts(seconds: float) -> str:
    moment = START + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def simulate(config: SimulationConfig, *, logins_csv: Path, truth_csv: Path) -> SimulationSummary:
    """Write the login CSV and its ground truth; return the counts."""
    rng = random.Random(config.seed)
    world = build_world(random.Random(config.seed * 7919 + 1))
    rows: list[Row] = []
    profiles: dict[str, Profile] = {}
    taken: set[int] = set()
    for _ in range(config.users):
        number = rng.getrandbits(63) - (1 << 62)
        while number in taken:
            number = rng.getrandbits(63) - (1 << 62)
        taken.add(number)
        user_rows, profile = _user_rows(rng, world, config, str(number))
        rows.extend(user_rows)
        profiles[str(number)] = profile

    attacks: dict[tuple[str, str], int] = {}
    users = sorted(profiles)
    end = DAYS * SECONDS_PER_DAY
    for klass in ATTACKER_CLASSES:
        for bucket in HISTORY_BUCKETS:
            low, high = bucket
            eligible = [u for u in users if len(profiles[u].success_times) >= low]
            placed = 0
            for _ in range(config.attacks_per_cell * 5):
                if placed == config.attacks_per_cell or not eligible:
                    break
                uid = rng.choice(eligible)
                times = profiles[uid].success_times
                top = len(times) if high is None else min(high, len(times))
                history = rng.randint(low, top)
                after = times[history - 1] + 1.0
                before = (times[history] if history < len(times) else end) - 1.0
                if before - after < 1.0:
                    continue
                ts = rng.uniform(after, before)
                attack = _attack_row(rng, world, klass, uid, profiles[uid], ts, history)
                if rng.random() < config.attacker_failure_rate:
                    # Wrong guesses first (several leaked passwords), same network and client.
                    for attempt in range(rng.randint(1, 3), 0, -1):
                        at = ts - attempt * rng.uniform(3, 30)
                        if at > after:
                            rows.append(dataclasses.replace(attack, ts=at, success=False))
                rows.append(attack)
                placed += 1
            attacks[(klass, bucket_label(bucket))] = placed

    rows.sort(key=lambda r: r.ts)
    previous = -1.0
    for r in rows:  # distinct millisecond timestamps, so that order never depends on ties
        r.ts = max(round(r.ts, 3), round(previous + 0.001, 3))
        previous = r.ts
    logins_csv.parent.mkdir(parents=True, exist_ok=True)
    truth_csv.parent.mkdir(parents=True, exist_ok=True)
    with (
        logins_csv.open("w", newline="", encoding="utf-8") as logins_file,
        truth_csv.open("w", newline="", encoding="utf-8") as truth_file,
    ):
        logins = csv.writer(logins_file)
        truth = csv.writer(truth_file)
        logins.writerow(COLUMNS)
        truth.writerow(TRUTH_COLUMNS)
        for index, r in enumerate(rows):
            logins.writerow(
                (
                    index, _format_ts(r.ts), r.user, r.rtt, r.ip, r.country, r.region, r.city,
                    r.asn, r.ua, r.browser, r.os, r.device_type, r.success, r.learn,
                )
            )  # fmt: skip
            truth.writerow(
                (index, int(bool(r.attack)), r.attack, r.history, r.user, int(r.success))
            )
    users_by_bucket: dict[str, int] = {"0": 0}
    for bucket in HISTORY_BUCKETS:
        users_by_bucket[bucket_label(bucket)] = 0
    for profile in profiles.values():
        found = bucket_of(len(profile.success_times))
        users_by_bucket["0" if found is None else bucket_label(found)] += 1
    legit = [r for r in rows if not r.attack]
    return SimulationSummary(
        users=config.users,
        rows=len(rows),
        legit_successful=sum(1 for r in legit if r.success),
        legit_failed=sum(1 for r in legit if not r.success),
        attack_failed=sum(1 for r in rows if r.attack and not r.success),
        attacks=attacks,
        users_by_bucket=users_by_bucket,
    )


def main(argv: Sequence[str] | None = None) -> None:
    defaults = SimulationConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=defaults.users)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--attacks-per-cell", type=int, default=defaults.attacks_per_cell)
    parser.add_argument("--out", type=Path, default=Path("bench/results/risk"))
    args = parser.parse_args(argv)
    config = SimulationConfig(
        users=args.users, seed=args.seed, attacks_per_cell=args.attacks_per_cell
    )
    summary = simulate(config, logins_csv=args.out / "logins.csv", truth_csv=args.out / "truth.csv")
    print(summary)


if __name__ == "__main__":
    main()
