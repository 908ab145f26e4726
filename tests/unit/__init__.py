"""Unit tests: pure logic, golden files, the fake engine; no daemon."""
