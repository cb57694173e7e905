"""One declaration per cross-field rule, enforced both by pydantic and by the API server.

A rule that spans fields (``exactly one of inference or tuning``, ``imagePushSecret is required
with image``, ``instanceType is immutable``) is declared once, on the model it constrains, as a
:class:`Rule`: the CEL expression the CRD generator writes into ``x-kubernetes-validations``, its
Python twin, the message and the path of the field to blame. Keeping the pair side by side makes
a drift between admission by the API server and by the webhook/validator visible in review, and
the unit tests evaluate both against the same table of objects.

Transition rules (those that read ``oldSelf``) only run on update: the API server evaluates them
when the field exists in both the old and the new object; :func:`transition_errors` does the same
for pydantic models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = ["ApiModel", "FieldError", "Rule", "transition_errors"]

# FieldValueDuplicate is left out on purpose: the API server prints it without the message.
Reason = Literal["FieldValueRequired", "FieldValueInvalid", "FieldValueForbidden"]


@dataclass(frozen=True, slots=True)
class FieldError:
    """A validation failure on one field.

    Attributes:
        field: JSON path of the offending field from the object root, camelCase as in YAML,
            list indices in brackets: ``tuning.output.imagePushSecret``,
            ``inference.adapters[0].strength``.
        message: What is wrong and how to fix it.
    """

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


@dataclass(frozen=True, slots=True)
class Rule:
    """A cross-field rule on the model that declares it.

    Attributes:
        cel: The CEL expression, with ``self`` (and ``oldSelf`` for transition rules) bound to
            this model's object as the API server sees it.
        message: Shown when the rule fails; it names the field and says how to fix it.
        field: Path of the field to blame, relative to the model (``imagePushSecret``,
            ``source.name``); empty for the model itself. Becomes the CRD ``fieldPath``.
        check: The Python twin of ``cel``: ``check(self)``, or ``check(self, old)`` for a
            transition rule. Returns True when the object is valid.
        reason: The API server's error kind (``FieldValueInvalid`` when omitted).
        transition: Whether the rule compares with the old object (update only).
        field_path_in_crd: Whether ``field`` is a path in the CRD schema (so the API server may
            use it as ``fieldPath``); False for paths such as ``metadata.name`` that the CRD
            does not describe.
    """

    cel: str
    message: str
    field: str
    check: Callable[..., bool]
    reason: Reason | None = None
    transition: bool = False
    field_path_in_crd: bool = True

    def to_crd(self) -> dict[str, str]:
        """The ``x-kubernetes-validations`` entry."""
        entry = {"rule": self.cel, "message": self.message}
        if self.field and self.field_path_in_crd:
            entry["fieldPath"] = "." + self.field
        if self.reason:
            entry["reason"] = self.reason
        return entry


def _loc(field: str) -> tuple[str, ...]:
    return tuple(field.split(".")) if field else ()


def _rules_schema(schema: dict[str, Any], cls: type[Any]) -> None:
    """Write a model's rules into its JSON schema as ``x-kubernetes-validations``."""
    rules: tuple[Rule, ...] = getattr(cls, "__rules__", ())
    if rules:
        schema["x-kubernetes-validations"] = [rule.to_crd() for rule in rules]


class ApiModel(BaseModel):
    """Base of the spec models: camelCase aliases, unknown fields rejected, rules enforced.

    Subclasses list their cross-field rules in ``__rules__``; the non-transition ones run after
    field validation and fail with one error per broken rule, located at the blamed field.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        use_enum_values=True,
        json_schema_extra=_rules_schema,
    )

    __rules__: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> ApiModel:
        failures = [rule for rule in self.__rules__ if not rule.transition and not rule.check(self)]
        if failures:
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "kaito_rule", "{message}", {"message": rule.message}
                        ),
                        loc=_loc(rule.field),
                        input=None,
                    )
                    for rule in failures
                ],
            )
        return self


def transition_errors(new: ApiModel, old: ApiModel, prefix: str = "") -> list[FieldError]:
    """Evaluate the transition (update) rules of ``new`` against ``old``, recursively.

    Like the API server, a nested model's transition rules run only when that model is present
    in both objects; list items are not paired (no rule needs it).
    """
    errors = [
        FieldError(_join(prefix, rule.field), rule.message)
        for rule in new.__rules__
        if rule.transition and not rule.check(new, old)
    ]
    for name, child, path in _children(new, prefix):
        old_child = getattr(old, name, None)
        if isinstance(old_child, ApiModel) and type(old_child) is type(child):
            errors.extend(transition_errors(child, old_child, path))
    return errors


def _children(model: ApiModel, prefix: str) -> Iterator[tuple[str, ApiModel, str]]:
    """The directly nested models of ``model`` (not list items), with their JSON paths."""
    for name, info in type(model).model_fields.items():
        value: Any = getattr(model, name)
        if isinstance(value, ApiModel):
            yield name, value, _join(prefix, info.alias or name)


def _join(prefix: str, field: str) -> str:
    if not prefix:
        return field
    return f"{prefix}.{field}" if field else prefix
