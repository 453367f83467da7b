"""Measurement: exact percentiles, statistics, recovery analysis, SLA tiers, telemetry."""
