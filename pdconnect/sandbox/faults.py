"""Fault injection for the sandbox's events, REST and identity endpoints, and its per-key rate limiter.

A :class:`FaultPlan` says what share of requests to its target endpoints (the events
endpoints unless it says otherwise) fail and how:
429 with or without ``Retry-After``, 500/502/503/504, added latency, dropped connections
(reset without an answer), and "down" for a period (every connection dropped). It is set
from the command line (``--faults "429=0.05,503=0.05,retry-after=1,latency=50"``) or the
control API, and draws from its own seeded random generator, so a run can be repeated.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

#: The path families a fault plan can target.
FAMILIES = ("events", "rest", "identity")


class FaultSpecError(ValueError):
    """A fault specification could not be read."""


@dataclass
class FaultPlan:
    """The shares (0 to 1) and settings of injected faults; all off by default."""

    rate_429: float = 0.0
    rate_429_retry_after: float = 0.0
    retry_after: float = 1.0
    rate_500: float = 0.0
    rate_502: float = 0.0
    rate_503: float = 0.0
    rate_503_retry_after: float = 0.0
    rate_504: float = 0.0
    rate_drop: float = 0.0
    latency_ms: float = 0.0
    down_for: float = 0.0
    seed: int | None = None
    #: The path families faults apply to: ``events`` (the default, as before), ``rest``, ``identity``.
    targets: tuple[str, ...] = ("events",)

    _RATES: ClassVar[tuple[str, ...]] = (
        "rate_429",
        "rate_429_retry_after",
        "rate_500",
        "rate_502",
        "rate_503",
        "rate_503_retry_after",
        "rate_504",
        "rate_drop",
    )
    _ALIASES: ClassVar[dict[str, str]] = {
        "429": "rate_429",
        "429-retry-after": "rate_429_retry_after",
        "429ra": "rate_429_retry_after",
        "500": "rate_500",
        "502": "rate_502",
        "503": "rate_503",
        "503-retry-after": "rate_503_retry_after",
        "504": "rate_504",
        "drop": "rate_drop",
        "latency": "latency_ms",
        "retry-after": "retry_after",
        "down": "down_for",
        "seed": "seed",
    }

    #: Upper bounds of the other settings: a minute of latency, a day of Retry-After or downtime.
    _LIMITS: ClassVar[dict[str, float]] = {"latency_ms": 60_000.0, "retry_after": 86_400.0, "down_for": 86_400.0}

    def __post_init__(self) -> None:
        # Every value is checked where it is read: NaN passes "0 <= x" tests by failing them
        # quietly, and a NaN latency made every request fail in time.sleep.
        for name in (*self._RATES, *self._LIMITS):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise FaultSpecError(f"{name} must be a number, got {type(value).__name__}")
            if not math.isfinite(value):
                raise FaultSpecError(f"{name} must be a finite number")
        for name in self._RATES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise FaultSpecError(f"{name} must be between 0 and 1")
        if math.fsum(getattr(self, name) for name in self._RATES) > 1.0 + 1e-9:
            raise FaultSpecError("the fault rates add up to more than 1")
        for name, limit in self._LIMITS.items():
            if getattr(self, name) < 0:
                raise FaultSpecError(f"{name} must not be negative")
            if getattr(self, name) > limit:
                raise FaultSpecError(f"{name} must be at most {limit:g}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise FaultSpecError("seed must be a whole number")
        targets: object = self.targets  # from JSON or a caller: anything
        if not isinstance(targets, list | tuple) or not targets:
            raise FaultSpecError(f"targets must be a non-empty list of {', '.join(FAMILIES)}")
        if any(not isinstance(t, str) or t not in FAMILIES for t in targets):
            raise FaultSpecError(f"targets must be among {', '.join(FAMILIES)}")
        self.targets = tuple(dict.fromkeys(targets))

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        """Read ``name=value`` pairs separated by commas.

        Names: ``429``, ``429-retry-after``, ``500``, ``502``, ``503``, ``503-retry-after``,
        ``504``, ``5xx`` (spread over 500, 502, 503 and 504), ``drop`` (shares from 0 to 1);
        ``retry-after`` (seconds sent with the ``-retry-after`` kinds), ``latency``
        (milliseconds added to every answer), ``down`` (seconds from now during which every
        connection is dropped), ``seed``; ``target`` (the path families hit, joined by ``+``:
        ``events``, ``rest``, ``identity`` or ``all``; ``events`` when not given).
        """
        values: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, sep, raw = part.partition("=")
            name = name.strip().lower()
            if not sep:
                raise FaultSpecError(f"expected name=value, got {part[:40]!r}")
            if name in ("target", "targets"):
                words = [w.strip().lower() for w in raw.split("+")]
                values["targets"] = FAMILIES if words == ["all"] else tuple(words)
                continue
            try:
                number = float(raw.strip().removesuffix("ms").removesuffix("s"))
            except ValueError as exc:
                raise FaultSpecError(f"{name}: {raw[:40]!r} is not a number") from exc
            if not math.isfinite(number):
                raise FaultSpecError(f"{name}: {raw[:40]!r} is not a finite number")
            if name == "seed" and not number.is_integer():
                raise FaultSpecError(f"seed: {raw[:40]!r} is not a whole number")
            if name == "5xx":
                for code in ("rate_500", "rate_502", "rate_503", "rate_504"):
                    values[code] = values.get(code, 0.0) + number / 4
            elif name in cls._ALIASES:
                values[cls._ALIASES[name]] = int(number) if name == "seed" else number
            else:
                raise FaultSpecError(f"unknown fault {name[:40]!r}")
        try:
            return cls(**values)
        except FaultSpecError as exc:
            raise FaultSpecError(cls._in_spec_words(str(exc))) from None

    @classmethod
    def _in_spec_words(cls, message: str) -> str:
        """``message`` with field names (``rate_429``) as a spec writes them (``429``)."""
        spelled = {field: alias for alias, field in reversed(cls._ALIASES.items())}
        for field_name in sorted(spelled, key=len, reverse=True):
            message = message.replace(field_name, spelled[field_name])
        return message

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultPlan:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise FaultSpecError(f"unknown fault settings: {sorted(str(name)[:40] for name in unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise FaultSpecError(str(exc)) from exc

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready fields (``targets`` a list)."""
        data = asdict(self)
        data["targets"] = list(self.targets)
        return data

    @property
    def active(self) -> bool:
        return any(getattr(self, name) for name in self._RATES) or bool(self.latency_ms or self.down_for)


@dataclass(frozen=True)
class Decision:
    """What to do to one request: drop it, answer it with a status, and how long to wait first."""

    delay: float = 0.0
    drop: bool = False
    status: int | None = None
    retry_after: float | None = None


@dataclass
class Faults:
    """Applies a :class:`FaultPlan`, one decision per request; safe across threads."""

    plan: FaultPlan = field(default_factory=FaultPlan)
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.set(self.plan)

    def set(self, plan: FaultPlan) -> None:
        with self._lock:
            self.plan = plan
            self._rng = random.Random(plan.seed)  # noqa: S311 -- simulation, not secrecy
            self._down_until = self.clock() + plan.down_for if plan.down_for else None

    def decide(self, family: str = "events") -> Decision:
        """The decision for one request to a path of ``family`` (``events``, ``rest`` or ``identity``)."""
        plan = self.plan
        if not plan.active or family not in plan.targets:
            return Decision()
        with self._lock:
            delay = plan.latency_ms / 1000.0
            if self._down_until is not None and self.clock() < self._down_until:
                return Decision(delay=delay, drop=True)
            roll = self._rng.random()
        for name, outcome in (
            ("rate_drop", Decision(delay=delay, drop=True)),
            ("rate_429", Decision(delay=delay, status=429)),
            ("rate_429_retry_after", Decision(delay=delay, status=429, retry_after=plan.retry_after)),
            ("rate_500", Decision(delay=delay, status=500)),
            ("rate_502", Decision(delay=delay, status=502)),
            ("rate_503", Decision(delay=delay, status=503)),
            ("rate_503_retry_after", Decision(delay=delay, status=503, retry_after=plan.retry_after)),
            ("rate_504", Decision(delay=delay, status=504)),
        ):
            share = getattr(plan, name)
            if roll < share:
                return outcome
            roll -= share
        return Decision(delay=delay)


class RateLimiter:
    """PagerDuty's per-key limit: at most ``limit`` events in any 60-second window.

    ``limit=None`` turns it off (for benchmarks).
    """

    WINDOW = 60.0

    def __init__(self, limit: int | None = 120, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """Count one event for ``key``; ``False`` when the key is over its limit."""
        if self.limit is None:
            return True
        now = self._clock()
        with self._lock:
            stamps = self._seen.setdefault(key, deque())
            while stamps and stamps[0] <= now - self.WINDOW:
                stamps.popleft()
            if len(stamps) >= self.limit:
                return False
            stamps.append(now)
            return True

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()
