"""Bedrock Usage Warehouse: Dagster assets and DuckDB models for Amazon Bedrock usage and quota headroom."""

__version__ = "0.1.0"
