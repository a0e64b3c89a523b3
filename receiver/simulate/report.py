"""What a simulation sent and was answered, and what the receiver should now hold."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TypedDict

from receiver.simulate.plan import Delivery
from receiver.status import Status


class Expected(TypedDict):
    """What the receiver should hold after the simulation."""

    events: int
    """Distinct events stored, the two kinds below included."""
    invalid: int
    unhandled: int
    messages: int
    outbound: int
    inbound: int
    final_statuses: dict[str, int]


class Summary(TypedDict):
    """A simulation's figures, as printed and as `--json` writes them."""

    requests: int
    seconds: float
    requests_per_second: float
    answers: dict[str, int]
    latency_ms: dict[str, float] | None
    planned_deliveries: int
    unacknowledged: int
    expected: Expected


@dataclass
class Report:
    """What was sent and answered, and what the receiver should now hold."""

    requests: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    planned: int = 0
    unacknowledged: int = 0
    acknowledged: set[str] = field(default_factory=set)
    # The furthest step acknowledged per SMS, with its status; and which are outbound.
    reached: dict[str, tuple[int, Status]] = field(default_factory=dict)
    outbound: set[str] = field(default_factory=set)
    odd: dict[str, set[str]] = field(default_factory=lambda: {"invalid": set(), "unhandled": set()})

    def acknowledge(self, delivery: Delivery) -> None:
        """`delivery` answered as expected: stored (an invalid one refused and kept)."""
        self.acknowledged.add(delivery.event_id)
        if delivery.sms_id is None:
            self.odd[delivery.kind].add(delivery.event_id)
            return
        best = self.reached.get(delivery.sms_id)
        if best is None or delivery.step > best[0]:
            self.reached[delivery.sms_id] = (delivery.step, delivery.status)
        if delivery.outbound:
            self.outbound.add(delivery.sms_id)

    def expected(self) -> Expected:
        finals = Counter(
            status.value for sms, (_, status) in self.reached.items() if sms in self.outbound
        )
        return {
            "events": len(self.acknowledged),
            "invalid": len(self.odd["invalid"]),
            "unhandled": len(self.odd["unhandled"]),
            "messages": len(self.reached),
            "outbound": len(self.outbound),
            "inbound": len(self.reached) - len(self.outbound),
            "final_statuses": dict(sorted(finals.items())),
        }

    def summary(self) -> Summary:
        ordered = sorted(self.latencies)

        def at(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

        return {
            "requests": self.requests,
            "seconds": round(self.elapsed, 2),
            "requests_per_second": round(self.requests / self.elapsed, 1) if self.elapsed else 0,
            "answers": dict(sorted(self.answers.items())),
            "latency_ms": (
                {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": at(1.0)}
                if ordered
                else None
            ),
            "planned_deliveries": self.planned,
            "unacknowledged": self.unacknowledged,
            "expected": self.expected(),
        }
