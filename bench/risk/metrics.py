"""Ranking metrics for risk scores: ROC AUC, TPR at a fixed FPR, re-authentication rates.

Convention everywhere: a higher score means riskier, and a login is challenged (asked to
re-authenticate) when its score is at or above the threshold. Attacks are the positives,
legitimate logins the negatives. Scores that are NaN are treated as the highest risk
(``+inf``): an unscorable login is challenged, never waved through.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def as_scores(values: Iterable[float]) -> FloatArray:
    """A float array with NaN replaced by ``+inf`` (fail closed: unscorable is riskiest)."""
    array = np.fromiter(values, dtype=np.float64)
    array[np.isnan(array)] = np.inf
    return array


def average_ranks(values: FloatArray) -> FloatArray:
    """1-based ranks, ties sharing the average of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts_group = np.empty(ordered.size, dtype=bool)
    if ordered.size:
        starts_group[0] = True
        starts_group[1:] = ordered[1:] != ordered[:-1]
    group = np.cumsum(starts_group) - 1
    starts = np.flatnonzero(starts_group)
    ends = np.append(starts[1:], ordered.size)  # exclusive
    mean_rank = (starts + ends - 1) / 2.0 + 1.0
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = mean_rank[group]
    return ranks


def roc_auc(positives: FloatArray, negatives: FloatArray) -> float:
    """ROC AUC as the Mann-Whitney statistic: P(pos > neg) + P(pos == neg) / 2.

    NaN when either side is empty.
    """
    n_pos, n_neg = positives.size, negatives.size
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = average_ranks(np.concatenate([positives, negatives]))
    u_statistic = float(ranks[:n_pos].sum()) - n_pos * (n_pos + 1) / 2.0
    return u_statistic / (n_pos * n_neg)


def tpr_at_fpr(positives: FloatArray, negatives: FloatArray, max_fpr: float) -> float:
    """The highest TPR of any threshold whose FPR is at most ``max_fpr``.

    The challenged set is an upper set of scores (``score >= t``), so ties move together:
    with ``k = floor(max_fpr * n_neg)`` false positives allowed, the best threshold flags
    exactly the scores strictly above the (k+1)-th highest negative score.
    """
    if positives.size == 0 or negatives.size == 0:
        return math.nan
    allowed = math.floor(max_fpr * negatives.size + 1e-9)
    if allowed >= negatives.size:
        return 1.0
    descending = np.sort(negatives)[::-1]
    boundary = descending[allowed]
    return float(np.mean(positives > boundary))


def threshold_for_tpr(positives: FloatArray, tpr: float) -> float:
    """The highest threshold ``t`` such that at least ``tpr`` of the positives score ``>= t``."""
    if positives.size == 0:
        return math.nan
    allowed_misses = math.floor((1.0 - tpr) * positives.size + 1e-9)
    return float(np.sort(positives)[allowed_misses])


def median_reauth_rate(legit_scores_by_user: Mapping[str, FloatArray], threshold: float) -> float:
    """Median over users of the share of that user's legitimate logins at or above threshold.

    Users with no legitimate logins in the mapping do not count. NaN if there are none, or
    if the threshold is NaN (no positives to set it).
    """
    if math.isnan(threshold):
        return math.nan
    rates = [
        float(np.mean(np.where(np.isnan(scores), np.inf, scores) >= threshold))
        for scores in legit_scores_by_user.values()
        if scores.size
    ]
    if not rates:
        return math.nan
    return float(np.median(np.asarray(rates)))


def spearman(first: FloatArray, second: FloatArray) -> float:
    """Spearman rank correlation (Pearson over average ranks); NaN if either is constant."""
    if first.size != second.size or first.size < 2:
        return math.nan
    a = average_ranks(first)
    b = average_ranks(second)
    a = a - a.mean()
    b = b - b.mean()
    denominator = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    if denominator == 0.0:
        return math.nan
    return float((a * b).sum()) / denominator
