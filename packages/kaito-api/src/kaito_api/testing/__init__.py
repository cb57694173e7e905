"""Test support shipped with the API package, for the tests of every package.

* :mod:`kaito_api.testing.cases`: the quick-start Workspaces and tables of invalid creates and
  updates, each naming the field the error must blame.
* :mod:`kaito_api.testing.crd`: an in-process stand-in for the API server's admission of a
  custom resource (unknown fields, OpenAPI schema, CEL rules) driven by the generated CRD; it
  needs the ``cel-python`` and ``jsonschema`` test dependencies.
* :mod:`kaito_api.testing.leases`: an in-memory Lease for the leader-election wiring tests.
"""

from kaito_api.testing.cases import (
    DOLLY_PARQUET_URL,
    INVALID_CREATES,
    INVALID_UPDATES,
    VALID_UPDATES,
    InvalidCase,
    Layer,
    UpdateCase,
    quickstart_adapter,
    quickstart_inference,
    quickstart_tuning,
)

__all__ = [
    "DOLLY_PARQUET_URL",
    "INVALID_CREATES",
    "INVALID_UPDATES",
    "VALID_UPDATES",
    "InvalidCase",
    "Layer",
    "UpdateCase",
    "quickstart_adapter",
    "quickstart_inference",
    "quickstart_tuning",
]
