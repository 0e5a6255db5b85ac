"""The per-user statistical model of Freeman et al., "Who Are You? A Statistical Approach to
Measuring User Authenticity" (NDSS 2016).

The score of a login with features ``x`` for user ``u`` is the likelihood ratio

    S_u(x) = p(u | attack) / p(u | legit)  *  prod_k  p(x^k) / p(x^k | u)

where ``p(x^k)`` is the feature's distribution over every user's (legitimate) logins, which
stands for the attacker's distribution, and ``p(x^k | u)`` the user's own. Features are taken
as independent. A hierarchical feature (IP -> ASN -> country) is estimated down its path:

    p(x) = p(x_n) * prod_{j<n} p(x_j | x_(j+1))

and the same for the user. Estimates (``C`` global counts, ``N`` global logins, ``c`` the
user's counts, ``n`` the user's logins, ``alpha`` the smoothing weight):

    global:  p(x_n) = (C(x_n) + 1) / (N + 1)
             p(x_j | x_(j+1)) = (C(x_j) + 1) / (C(x_(j+1)) + 1)
    user:    p_u(x_n) = (c(x_n) + alpha * p(x_n)) / (n + alpha)
             p_u(x_j | x_(j+1)) = (c(x_j) + alpha * p(x_j | x_(j+1))) / (c(x_(j+1)) + alpha)

The user's estimate is smoothed toward the population (a Dirichlet prior of weight ``alpha``
centred on the global distribution), so a value the user has never used gets probability
``alpha * p / (parent count + alpha)``: its ratio at the first unfamiliar level is
``(parent count + alpha) / alpha``, and below it the user and the population agree (ratio 1).
A user with no history therefore scores exactly ``p(u | attack) / p(u | legit)``.

The user prior: an attacker picks a user uniformly, ``p(u | attack) = 1 / U``; legitimate
logins come from ``u`` in proportion to its history, ``p(u | legit) = (n + 1) / (N + U)``
(add-one so a user with no history is defined).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Population:
    """Counts over every user's trusted logins."""

    counts: Mapping[str, int]
    logins: int
    subjects: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureRatio:
    """``p(x^k) / p(x^k | u)`` for one feature, and the coarsest level the user never used."""

    feature: str
    ratio: float
    unfamiliar_level: int | None  # index into the levels, coarsest first; None if familiar


def hierarchy_ratio(
    feature: str,
    keys: tuple[str, ...],
    *,
    user: Mapping[str, int],
    user_logins: int,
    population: Population,
    alpha: float,
) -> FeatureRatio:
    """The likelihood ratio of one (hierarchical) feature; ``keys`` coarsest first."""
    ratio = 1.0
    parent_global = population.logins
    parent_user = user_logins
    unfamiliar: int | None = None
    counts = population.counts
    for level, key in enumerate(keys):
        big_c = counts.get(key, 0)
        small_c = user.get(key, 0)
        p_global = (big_c + 1) / (parent_global + 1)
        p_user = (small_c + alpha * p_global) / (parent_user + alpha)
        ratio *= p_global / p_user
        if small_c == 0 and unfamiliar is None and parent_user > 0:
            unfamiliar = level
        parent_global = big_c
        parent_user = small_c
    return FeatureRatio(feature=feature, ratio=ratio, unfamiliar_level=unfamiliar)


def user_prior(*, user_logins: int, population: Population) -> float:
    """``p(u | attack) / p(u | legit)`` with ``p(u | attack) = 1/U``."""
    subjects = max(population.subjects, 1)
    p_attack = 1.0 / subjects
    p_legit = (user_logins + 1) / (population.logins + subjects)
    return p_attack / p_legit


def log_ratio(ratio: float) -> float:
    return math.log(ratio) if ratio > 0 else -math.inf
