"""Who counts against whom: per-key limits, projects sharing a quota, per-key true limits.

A key outside any project is its own project: the default limits (or its overrides)
are its quota, answered with Gemini's real (per-project) quota ids. Keys listed in a
project share the project's windows and limits, like Gemini's per-project quotas. A
key's *true limit* is a limit of that key alone, enforced on top of the others and
answered with the per-key quota ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rotating_llm.testing._config import LIMIT_NAMES, Limits, fingerprint, validate_limit
from rotating_llm.testing._limits import Rejection, Scope, Windows

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["Admission", "QuotaView", "Quotas", "check_projects", "check_true_limits"]

#: One limit set a request must fit: the bucket it counts in, its limits, its scope.
Check = tuple[str, Limits, Scope]


@dataclass(frozen=True)
class QuotaView:
    """The tightest per-minute limit of a key now, for OpenAI's ``x-ratelimit-*`` headers.

    Attributes:
        limit: The limit (``None``: no limit of this kind applies to the key).
        remaining: ``limit`` minus what its window holds now (never below 0).
        reset: Seconds until that window holds nothing.
    """

    limit: int | None = None
    remaining: int = 0
    reset: float = 0.0


@dataclass(frozen=True)
class Admission:
    """The limiter's answer for one request: ``rejection`` is ``None`` when admitted.

    Attributes:
        rejection: Why the request was refused, if it was.
        limits: The key's quota (its project's, for a key in a project).
        requests: The tightest requests-per-minute view after the answer.
        tokens: The tightest tokens-per-minute view after the answer.
    """

    rejection: Rejection | None
    limits: Limits
    requests: QuotaView = QuotaView()
    tokens: QuotaView = QuotaView()


def _key_bucket(key: str) -> str:
    return f"key\0{key}"


def _project_bucket(project: str) -> str:
    return f"project\0{project}"


def check_projects(
    projects: Mapping[str, Iterable[str]] | None, limits: Limits | None = None
) -> dict[str, list[str]]:
    """Return ``projects`` as plain lists, or raise ``ValueError`` naming what is wrong.

    ``limits`` (the project limits) need at least one project to apply to.
    """
    if not projects and limits is not None and not limits.is_empty():
        raise ValueError("project_rpm/project_tpm/project_rpd/project_tpd need projects=")
    if projects is None:
        return {}
    if not hasattr(projects, "items"):
        raise ValueError("projects must map a project name to a list of keys")
    out: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for name, keys in projects.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"projects: a project name must be a non-empty string, got {name!r}")
        if isinstance(keys, str) or not hasattr(keys, "__iter__"):
            raise ValueError(
                f"projects[{name!r}] must be a list of keys, not {type(keys).__name__}"
            )
        members = list(keys)
        if not members or not all(isinstance(k, str) and k for k in members):
            raise ValueError(f"projects[{name!r}] must list at least one non-empty key string")
        for key in members:
            if key in owner:
                raise ValueError(
                    f"projects: key {fingerprint(key)} is in both {owner[key]!r} and {name!r}"
                )
            owner[key] = name
        out[name] = members
    return out


def check_true_limits(
    true_limits: Mapping[str, Mapping[str, int]] | None,
) -> dict[str, dict[str, int]]:
    """Return ``true_limits`` as plain dicts, or raise ``ValueError`` naming what is wrong."""
    if true_limits is None:
        return {}
    if not hasattr(true_limits, "items"):
        raise ValueError("true_limits must map a key to its limits, e.g. {'k1': {'rpm': 2}}")
    out: dict[str, dict[str, int]] = {}
    for key, limits in true_limits.items():
        if not isinstance(key, str) or not key:
            raise ValueError("true_limits: keys must be non-empty strings")
        what = f"true_limits[{fingerprint(key)}]"
        if not hasattr(limits, "items"):
            raise ValueError(f"{what} must be a dict like {{'rpm': 2}}")
        parsed = Limits.from_dict(dict(limits), what)
        if parsed.is_empty():
            raise ValueError(f"{what} sets no limit")
        out[key] = {k: v for k, v in parsed.to_dict().items() if v is not None}
    return out


def given_limits(**limits: int | None) -> dict[str, int]:
    """The limits given (not ``None``), validated."""
    out: dict[str, int] = {}
    for name in LIMIT_NAMES:
        value = validate_limit(name, limits.get(name))
        if value is not None:
            out[name] = value
    return out


def _tightest(found: list[tuple[int, int, float]]) -> QuotaView:
    """The view with the least remaining (then the lowest limit) among ``found``."""
    if not found:
        return QuotaView()
    left, limit, reset = min(found, key=lambda t: (t[0], t[1], -t[2]))
    return QuotaView(limit, left, reset)


class Quotas:
    """Every key's and project's quota and windows; not thread-safe (the caller locks).

    Args:
        defaults: Limits of each key outside any project.
        windows: The sliding windows (one bucket per key and per project).
        projects: Project name -> its keys (see :func:`check_projects`).
        project_limits: The limits of every project.
        true_limits: Key -> its true limits (see :func:`check_true_limits`).
    """

    def __init__(
        self,
        defaults: Limits,
        windows: Windows,
        projects: Mapping[str, Iterable[str]] | None = None,
        project_limits: Limits | None = None,
        true_limits: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        self.defaults = defaults
        self.windows = windows
        self.project_limits = project_limits or Limits()
        self.projects = check_projects(projects, self.project_limits)
        self._project_of = {k: name for name, keys in self.projects.items() for k in keys}
        self._true_base = {k: Limits(**v) for k, v in check_true_limits(true_limits).items()}
        self._true = dict(self._true_base)
        self._overrides: dict[str, dict[str, int]] = {}

    def project_of(self, key: str) -> str | None:
        """The project ``key`` belongs to, if any."""
        return self._project_of.get(key)

    def limits_for(self, key: str) -> Limits:
        """A key's quota: its project's, else its overrides over the defaults."""
        project = self._project_of.get(key)
        if project is not None:
            return self.project_limits
        over = self._overrides.get(key)
        return Limits(**{**self.defaults.to_dict(), **over}) if over else self.defaults

    def _checks(self, key: str) -> list[Check]:
        """The limit sets a request on ``key`` must fit, the project's first."""
        project = self._project_of.get(key)
        if project is None:
            checks: list[Check] = [(_key_bucket(key), self.limits_for(key), "project")]
        else:
            checks = [(_project_bucket(project), self.project_limits, "project")]
        true = self._true.get(key)
        if true is not None:
            checks.append((_key_bucket(key), true, "key"))
        return checks

    def _buckets(self, key: str) -> list[str]:
        project = self._project_of.get(key)
        bucket = _key_bucket(key)
        return [bucket] if project is None else [bucket, _project_bucket(project)]

    def views(self, key: str, now: float) -> tuple[QuotaView, QuotaView]:
        """The key's tightest per-minute requests and tokens views now."""
        requests: list[tuple[int, int, float]] = []
        tokens: list[tuple[int, int, float]] = []
        for bucket, limits, _ in self._checks(key):
            view = self.windows.minute_view(bucket, now)
            if limits.rpm is not None:
                requests.append(
                    (max(limits.rpm - view.requests, 0), limits.rpm, view.requests_reset)
                )
            if limits.tpm is not None:
                tokens.append((max(limits.tpm - view.tokens, 0), limits.tpm, view.tokens_reset))
        return _tightest(requests), _tightest(tokens)

    def admit(self, key: str, now: float, cost: int) -> Admission:
        """Admit one request costing ``cost`` tokens, or say which limit refused it.

        The request must fit every limit set of the key; it is counted in the key's
        window and in its project's.
        """
        rejection = None
        for bucket, limits, scope in self._checks(key):
            rejection = self.windows.check(bucket, now, cost, limits, scope)
            if rejection is not None:
                break
        if rejection is None:
            for bucket in self._buckets(key):
                self.windows.charge(bucket, now, 1, cost)
        requests, tokens = self.views(key, now)
        return Admission(rejection, self.limits_for(key), requests, tokens)

    def spend(self, key: str, now: float, requests: int, tokens: int) -> None:
        """Count another app's use of ``key`` in its window and its project's (no check)."""
        for bucket in self._buckets(key):
            self.windows.charge(bucket, now, requests, tokens)

    def key_usage(self, key: str, now: float) -> dict[str, int]:
        """A key's own requests and tokens inside its current windows."""
        return self.windows.usage(_key_bucket(key), now)

    def project_usage(self, project: str, now: float) -> dict[str, int]:
        """A project's requests and tokens inside its current windows."""
        if project not in self.projects:
            raise ValueError(f"unknown project {project!r} (known: {sorted(self.projects)})")
        return self.windows.usage(_project_bucket(project), now)

    def set_limits(self, key: str, over: dict[str, int]) -> None:
        """Override some limits of a key outside any project."""
        project = self._project_of.get(key)
        if project is not None:
            raise ValueError(
                f"key {fingerprint(key)} is in project {project!r}, whose limits it uses;"
                " give it a limit of its own with set_true_limits"
            )
        self._overrides.setdefault(key, {}).update(over)

    def clear_limits(self, key: str) -> None:
        """Return a key to the default limits."""
        self._overrides.pop(key, None)

    def set_true_limits(self, key: str, over: dict[str, int]) -> None:
        """Set some of a key's true limits."""
        current = self._true.get(key, Limits()).to_dict()
        self._true[key] = Limits(**{**current, **over})

    def clear_true_limits(self, key: str) -> None:
        """Remove a key's true limits (those given at construction too)."""
        self._true.pop(key, None)

    def reset(self) -> None:
        """Forget windows and overrides; true limits return to the constructor's."""
        self.windows.reset()
        self._overrides.clear()
        self._true = dict(self._true_base)
