"""Test helpers shipped with the package: offline tiny models for tests and local quick starts."""
