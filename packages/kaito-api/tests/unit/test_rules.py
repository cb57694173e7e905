"""Each declared rule is well-formed: its CEL matches its kind and its message names its field."""

from __future__ import annotations

import pytest
from kaito_api import nodeclaim
from kaito_api.rules import ApiModel, Rule
from kaito_api.v1beta1 import workspace
from pydantic import BaseModel

MODELS = [
    obj
    for module in (workspace, nodeclaim)
    for obj in vars(module).values()
    if isinstance(obj, type) and issubclass(obj, ApiModel) and obj.__rules__
]
RULES = [
    pytest.param(model, rule, id=f"{model.__name__}:{rule.field or 'self'}:{i}")
    for model in MODELS
    for i, rule in enumerate(model.__rules__)
    if rule in model.__dict__.get("__rules__", ())  # declared here, not inherited
]


def test_rules_found():
    assert len(RULES) >= 20


@pytest.mark.parametrize(("model", "rule"), RULES)
def test_transition_rules_and_only_they_use_old_self(model: type[ApiModel], rule: Rule):
    assert ("oldSelf" in rule.cel) is rule.transition


@pytest.mark.parametrize(("model", "rule"), [r for r in RULES if r.values[1].field])
def test_message_names_the_field(model: type[ApiModel], rule: Rule):
    assert rule.field.split(".")[-1] in rule.message


@pytest.mark.parametrize(("model", "rule"), RULES)
def test_blamed_field_exists_on_the_model(model: type[ApiModel], rule: Rule):
    current: type = model
    for part in rule.field.split(".") if rule.field else ():
        fields = {(info.alias or name): info for name, info in current.model_fields.items()}
        assert part in fields, f"{model.__name__}: {rule.field}"
        annotation = fields[part].annotation
        nested = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)]
        current = next((a for a in nested if issubclass(a, BaseModel)), BaseModel)
