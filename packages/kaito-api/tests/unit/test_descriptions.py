"""Every field of every API model has a description (it becomes the CRD's documentation)."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator

from kaito_api import conditions, nodeclaim, objectmeta, v1alpha1, v1beta1
from pydantic import BaseModel

ROOTS: list[type[BaseModel]] = [
    v1beta1.Workspace,
    v1alpha1.Workspace,
    nodeclaim.NodeClaim,
    conditions.Condition,
    objectmeta.ObjectMeta,
]


def _models_in(annotation: object) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)
    if isinstance(annotation, types.UnionType):
        for arg in annotation.__args__:
            yield from _models_in(arg)


def _all_models() -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = []
    todo = list(ROOTS)
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.append(model)
        for info in model.model_fields.values():
            todo.extend(_models_in(info.annotation))
    return seen


def test_walk_reaches_the_nested_models():
    names = {m.__name__ for m in _all_models()}
    assert {"AdapterSpec", "DataDestination", "Taint", "NodeClassReference", "Condition"} <= names


def test_every_field_has_a_description():
    missing = [
        f"{model.__name__}.{name}"
        for model in _all_models()
        for name, info in model.model_fields.items()
        if not (info.description and info.description.strip())
    ]
    assert missing == []


def test_every_model_has_a_docstring():
    assert [m.__name__ for m in _all_models() if not (m.__doc__ or "").strip()] == []
