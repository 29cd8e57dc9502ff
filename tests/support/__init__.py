"""Test helpers, each written once: processes and ports, receivers, the contract oracle, sample data."""
