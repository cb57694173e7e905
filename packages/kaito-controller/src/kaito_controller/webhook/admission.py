"""What the validating webhook says about a Workspace: the validation libraries' errors.

Why: the API server's CRD schema and CEL rules catch shape errors; the webhook adds what needs
the model catalog (unknown preset, instance type too small, tuning unsupported...). Both rule
sets live in the API and presets packages; this module only calls them and formats the
answer, so it is a pure function that tests can call without a server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaito_api.validation import check_workspace_static


def admission_errors(
    body: Mapping[str, Any], old: Mapping[str, Any] | None, *, nap_enabled: bool
) -> list[str]:
    """Every reason to refuse ``body`` (empty when it is admissible)."""
    errors, workspace, previous = check_workspace_static(body, old)
    if errors or workspace is None:
        return [str(e) for e in errors]
    from kaito_presets.validation import catalog_errors

    return [str(e) for e in catalog_errors(workspace, previous, nap_enabled=nap_enabled)]


def denial_message(errors: list[str]) -> str:
    """One message for ``kubectl apply``: every problem, each naming its field."""
    return "Workspace is invalid: " + "; ".join(errors)
