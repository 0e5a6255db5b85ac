"""The policy engine: ordered rules, indexed by action, first match wins.

Matching a request is two steps:

1. **Candidates by action.** The rules whose action patterns match the action, in policy order.
   Exact actions sit in a dict. A glob is filed under its longest literal end: its prefix
   before the first wildcard (``payments.*`` under ``payments.``) or, when the suffix is
   longer, its suffix after the last one (``*.delete`` under ``.delete``); all-wildcard globs
   (``*``) are always candidates. A lookup probes only the prefix and suffix lengths that
   occur in the index, then runs each probed glob's regex. The result is memoised per
   distinct action in a bounded dict, so the hot path is one dict lookup, flat in the number
   of rules.
2. **First match among the candidates.** Resource, groups, the HTTP request (hosts, paths,
   methods: only rules that name them, only for forward-auth actions), then the CEL
   condition. The CEL context is prepared at most once per call, and only when a candidate
   with a condition is reached; it holds only the roots that the candidates' conditions read.

Globs use ``*`` (any run of characters, dots included) and ``?`` (one character); every other
character, ``[`` included, is literal. Matching is case-sensitive.
"""

from __future__ import annotations

import contextlib
import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from stepguard.core.errors import PolicyEvaluationError
from stepguard.core.policy.cel import Condition, RootFields, cel_context, merge_fields
from stepguard.core.policy.http import HttpMatch
from stepguard.core.policy.model import PolicyInput, Rule

if TYPE_CHECKING:
    import cel

DEFAULT_MEMO_LIMIT: Final = 4096
"""Distinct actions whose candidate lists are kept; the oldest is dropped beyond this."""

_MEMO_MAX_ACTION_LENGTH: Final = 256  # longer actions are matched but never memoised

_WILDCARDS: Final = frozenset("*?")


def is_glob(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern


def compile_glob(pattern: str) -> re.Pattern[str]:
    """A regex for a glob with ``*`` and ``?`` only (``[`` is literal), matched in full.

    Built with :func:`fnmatch.translate`, whose atomic groups keep ``a*b*c`` linear.
    """
    return re.compile(fnmatch.translate(pattern.replace("[", "[[]")))


def _literal_prefix(pattern: str) -> str:
    for i, char in enumerate(pattern):
        if char in _WILDCARDS:
            return pattern[:i]
    return pattern


def _literal_suffix(pattern: str) -> str:
    for i in range(len(pattern) - 1, -1, -1):
        if pattern[i] in _WILDCARDS:
            return pattern[i + 1 :]
    return pattern


@dataclass(frozen=True, slots=True, kw_only=True)
class CompiledRule:
    """One validated rule, as the loader hands it to the engine.

    ``resources`` of ``None`` matches any resource (and a request without one); otherwise the
    request's resource must match one of the patterns. Empty ``groups`` matches any subject;
    otherwise the subject must be in at least one of them.
    """

    rule: Rule
    actions: tuple[str, ...]
    resources: tuple[str, ...] | None = None
    groups: frozenset[str] = frozenset()
    condition: Condition | None = None
    http: HttpMatch | None = None  # match.hosts/paths/methods; None = any (or no) request


class _Matcher:
    """The per-request half of a rule, with its resource patterns compiled."""

    __slots__ = (
        "any_resource",
        "condition",
        "groups",
        "http",
        "position",
        "resource_exact",
        "resource_glob",
        "rule",
    )

    def __init__(self, position: int, compiled: CompiledRule) -> None:
        self.position = position
        self.rule = compiled.rule
        self.groups = compiled.groups
        self.condition = compiled.condition
        self.http = compiled.http
        resources = compiled.resources
        self.any_resource = resources is None
        patterns = resources or ()
        self.resource_exact = frozenset(p for p in patterns if not is_glob(p))
        globs = [p for p in patterns if is_glob(p)]
        self.resource_glob: re.Pattern[str] | None = (
            re.compile("|".join(f"(?:{compile_glob(p).pattern})" for p in globs)) if globs else None
        )

    def matches_resource(self, resource: str | None) -> bool:
        if self.any_resource:
            return True
        if resource is None:
            return False
        if resource in self.resource_exact:
            return True
        return self.resource_glob is not None and self.resource_glob.match(resource) is not None


@dataclass(frozen=True, slots=True)
class _Candidates:
    matchers: tuple[_Matcher, ...]
    cel_needs: RootFields  # what the candidates' conditions read, merged


_GlobEntry = tuple[re.Pattern[str], int]


class _GlobIndex:
    """Glob action patterns filed under a literal prefix or suffix of the pattern."""

    def __init__(self) -> None:
        self.by_prefix: dict[str, list[_GlobEntry]] = {}
        self.by_suffix: dict[str, list[_GlobEntry]] = {}
        self.everywhere: list[_GlobEntry] = []
        self.prefix_lengths: tuple[int, ...] = ()
        self.suffix_lengths: tuple[int, ...] = ()

    def add(self, pattern: str, position: int) -> None:
        entry = (compile_glob(pattern), position)
        prefix, suffix = _literal_prefix(pattern), _literal_suffix(pattern)
        if prefix and len(prefix) >= len(suffix):
            self.by_prefix.setdefault(prefix, []).append(entry)
        elif suffix:
            self.by_suffix.setdefault(suffix, []).append(entry)
        else:
            self.everywhere.append(entry)

    def seal(self) -> None:
        """Record which prefix and suffix lengths to probe. Call once, after the last add."""
        self.prefix_lengths = tuple(sorted({len(p) for p in self.by_prefix}))
        self.suffix_lengths = tuple(sorted({len(s) for s in self.by_suffix}))

    def matching(self, action: str, found: set[int]) -> None:
        """Add to ``found`` the positions of glob rules that match ``action``."""
        size = len(action)
        buckets: list[list[_GlobEntry]] = []
        for length in self.prefix_lengths:
            if length > size:
                break
            bucket = self.by_prefix.get(action[:length])
            if bucket is not None:
                buckets.append(bucket)
        for length in self.suffix_lengths:
            if length > size:
                break
            bucket = self.by_suffix.get(action[size - length :])
            if bucket is not None:
                buckets.append(bucket)
        buckets.append(self.everywhere)
        for bucket in buckets:
            for regex, position in bucket:
                if position not in found and regex.match(action) is not None:
                    found.add(position)


class PolicyEngine:
    """A compiled policy: satisfies :class:`~stepguard.core.policy.model.CompiledPolicy`.

    Immutable after construction except for the memo of candidate lists, which only caches
    what the index computes; concurrent callers at worst compute an entry twice.
    """

    def __init__(
        self,
        *,
        source: str,
        rules: Sequence[CompiledRule],
        default: Rule,
        memo_limit: int = DEFAULT_MEMO_LIMIT,
    ) -> None:
        if memo_limit < 1:
            raise ValueError("memo_limit must be at least 1")
        self._source = source
        self._rules = tuple(compiled.rule for compiled in rules)
        self._default = default
        self._matchers = tuple(_Matcher(i, compiled) for i, compiled in enumerate(rules))
        self._exact: dict[str, list[int]] = {}
        self._globs = _GlobIndex()
        for position, compiled in enumerate(rules):
            for pattern in dict.fromkeys(compiled.actions):
                if is_glob(pattern):
                    self._globs.add(pattern, position)
                else:
                    self._exact.setdefault(pattern, []).append(position)
        self._globs.seal()
        self._memo: dict[str, _Candidates] = {}
        # Room for every action the policy names literally, and as many others (globs): a
        # large policy must not evict its own actions on every call.
        self._memo_limit = max(memo_limit, 2 * len(self._exact))

    @property
    def source(self) -> str:
        return self._source

    @property
    def rule_count(self) -> int:
        """The ordered rules, not counting the default."""
        return len(self._rules)

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The ordered rules' outcomes, in policy order, without the default."""
        return self._rules

    @property
    def default(self) -> Rule:
        return self._default

    def candidates(self, action: str) -> tuple[Rule, ...]:
        """The rules whose action patterns match ``action``, in policy order (for tooling)."""
        return tuple(m.rule for m in self._candidates(action).matchers)

    def evaluate(self, inp: PolicyInput) -> Rule:
        """The first matching rule, else the default. Raises PolicyEvaluationError."""
        candidates = self._candidates(inp.action)
        context: cel.Context | None = None
        resource = inp.resource
        groups = inp.groups
        for matcher in candidates.matchers:
            if not matcher.any_resource and not matcher.matches_resource(resource):
                continue
            if matcher.groups and matcher.groups.isdisjoint(groups):
                continue
            if matcher.http is not None and not matcher.http.matches(inp.http):
                continue
            condition = matcher.condition
            if condition is not None:
                if context is None:
                    context = _prepare(inp, candidates.cel_needs, rule=matcher.rule.id)
                if not condition.holds(context):
                    continue
            return matcher.rule
        return self._default

    def _candidates(self, action: str) -> _Candidates:
        memo = self._memo
        found = memo.get(action)
        if found is not None:
            return found
        found = self._index_lookup(action)
        if len(action) <= _MEMO_MAX_ACTION_LENGTH:
            if len(memo) >= self._memo_limit:
                # Drop the oldest entry; a concurrent caller may have changed the dict.
                with contextlib.suppress(StopIteration, KeyError, RuntimeError):
                    del memo[next(iter(memo))]
            memo[action] = found
        return found

    def _index_lookup(self, action: str) -> _Candidates:
        positions = set(self._exact.get(action, ()))
        self._globs.matching(action, positions)
        matchers = tuple(self._matchers[p] for p in sorted(positions))
        needs = merge_fields(m.condition.fields for m in matchers if m.condition is not None)
        return _Candidates(matchers=matchers, cel_needs=needs)


def _prepare(inp: PolicyInput, needs: RootFields, *, rule: str) -> cel.Context:
    try:
        return cel_context(inp, needs)
    except Exception as exc:  # the bindings convert eagerly and reject odd values
        raise PolicyEvaluationError(
            f"the request data cannot be converted for CEL: {type(exc).__name__}: {exc}",
            rule=rule,
        ) from exc
