"""Workspace and NodeClaim API types, and the CRD generator.

Import the versioned types from :mod:`kaito_api.v1beta1` (storage version) or
:mod:`kaito_api.v1alpha1`; the NodeClaim subset from :mod:`kaito_api.nodeclaim`; conditions from
:mod:`kaito_api.conditions`; well-known keys from :mod:`kaito_api.labels`; catalog-free
validation from :mod:`kaito_api.validation`.
"""

from kaito_api.rules import FieldError
from kaito_api.validation import WorkspaceInvalid, parse_workspace, validate_workspace_static

__version__ = "0.1.0"

__all__ = ["FieldError", "WorkspaceInvalid", "parse_workspace", "validate_workspace_static"]
