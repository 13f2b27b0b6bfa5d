"""Kafka → ClickHouse consumers (event pipeline issue)."""
