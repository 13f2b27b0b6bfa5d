"""Reading Prometheus text in tests: parsed with prometheus_client's own parser."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scrape:
    """One parsed exposition: families by name, and sample lookup by name and labels."""

    families: dict[str, Metric]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        return cls({family.name: family for family in text_string_to_metric_families(text)})

    @classmethod
    def of(cls, registry: CollectorRegistry) -> Scrape:
        return cls.parse(generate_latest(registry).decode())

    def value(self, sample: str, **labels: str) -> float:
        """The value of the sample named ``sample`` (``..._total`` for counters) with exactly
        ``labels``; ``KeyError`` naming what exists when there is none."""
        found = [
            s.value
            for family in self.families.values()
            for s in family.samples
            if s.name == sample and s.labels == labels
        ]
        if len(found) != 1:
            raise KeyError(
                f"{sample}{labels}: {len(found)} samples; families: {sorted(self.families)}"
            )
        return found[0]
