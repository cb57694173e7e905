"""``metav1.LabelSelector``: how a Workspace names its GPU nodes."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from kaito_api.rules import ApiModel, Rule
from kaito_api.types import LABEL_KEY_PATTERN, LabelKey, LabelValue, is_label_key

__all__ = ["LabelSelector", "LabelSelectorRequirement"]


class LabelSelectorRequirement(ApiModel):
    """A label selector requirement (``key operator values``)."""

    key: LabelKey = Field(description="The label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="How the key relates to the values: In, NotIn, Exists or DoesNotExist."
    )
    values: list[LabelValue] | None = Field(
        default=None,
        max_length=64,
        description="Values for In/NotIn; must be empty for Exists/DoesNotExist.",
    )

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=(
                "self.operator in ['In', 'NotIn'] ? (has(self.values) && self.values.size() > 0)"
                " : (!has(self.values) || self.values.size() == 0)"
            ),
            message="values must be set for operators In and NotIn, and empty for Exists and "
            "DoesNotExist",
            field="values",
            check=lambda s: bool(s.values) == (s.operator in ("In", "NotIn")),
        ),
    )


# The label key pattern as a CEL string literal (backslashes escaped once more).
_LABEL_KEY_CEL = "'" + LABEL_KEY_PATTERN.replace("\\", "\\\\") + "'"


class LabelSelector(ApiModel):
    """Selects the GPU nodes of the workspace; ``matchLabels`` become the nodes' labels."""

    match_labels: dict[str, LabelValue] | None = Field(
        default=None,
        max_length=64,
        description=(
            "Labels the workspace's nodes carry. Provisioned nodes get them; with your own "
            "nodes (no auto-provisioning) they select the nodes to use."
        ),
    )
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None, max_length=16, description="Extra selector requirements (ANDed)."
    )

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=(
                "!has(self.matchLabels) || self.matchLabels.all(k, k.size() <= 317 && "
                f"k.matches({_LABEL_KEY_CEL}))"
            ),
            message=(
                "matchLabels keys must be valid label keys ([prefix/]name, name at most 63 "
                "letters, digits, '-', '_' or '.'; prefix a DNS subdomain)"
            ),
            field="matchLabels",
            check=lambda s: all(len(k) <= 317 and is_label_key(k) for k in s.match_labels or {}),
        ),
    )
