"""Contracts shared by every stage: record models, the Kafka topic catalogue, the OTLP
attribute vocabulary the SDK emits and the sink reads, and the ClickHouse migrations.

Nothing here imports Kafka or ClickHouse, so the SDK can use it too.
"""
