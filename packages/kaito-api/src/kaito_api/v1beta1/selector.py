"""``metav1.LabelSelector``: how a Workspace names its GPU nodes."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from kaito_api.rules import ApiModel, Rule
from kaito_api.types import LABEL_KEY_PATTERN, LabelValue, is_label_key

__all__ = ["LabelSelector", "LabelSelectorRequirement"]


class LabelSelectorRequirement(ApiModel):
    """A label selector requirement (``key operator values``)."""

    key: str = Field(min_length=1, max_length=317, description="The label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="How the key relates to the values: In, NotIn, Exists or DoesNotExist."
    )
    values: list[Annotated[str, Field(max_length=63)]] | None = Field(
        default=None,
        max_length=64,
        description="Values for In/NotIn; must be empty for Exists/DoesNotExist.",
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
