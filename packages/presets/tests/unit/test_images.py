"""The runtime image catalog: CUDA's compatibility rule, lookups, and catalog errors."""

from __future__ import annotations

from typing import Any

import pytest
from kaito_presets.errors import CatalogError
from kaito_presets.images import (
    _build,
    all_images,
    arch_runs_on,
    get_image,
    inference_image_for,
    sm_name,
    tuning_image_for,
)
from kaito_presets.skus import all_skus, get_sku


@pytest.mark.parametrize(
    ("arch", "cc", "runs"),
    [
        ("sm_70", (7, 0), True),
        ("sm_70", (7, 5), True),  # same major, newer minor: binary compatible
        ("sm_75", (7, 0), False),
        ("sm_80", (8, 6), True),
        ("sm_86", (8, 0), False),
        ("sm_80", (9, 0), False),  # a cubin never crosses a major version
        ("sm_90a", (9, 0), True),
        ("sm_90a", (10, 0), False),  # arch-specific: that capability only
        ("compute_80", (8, 9), True),  # PTX is compiled forward by the driver
        ("compute_80", (9, 0), True),
        ("compute_80", (7, 5), False),
        ("sm_120", (12, 0), True),
        ("sm_100", (10, 0), True),
    ],
)
def test_arch_rule(arch: str, cc: tuple[int, int], runs: bool) -> None:
    assert arch_runs_on(arch, cc) is runs


def test_arch_rule_rejects_other_names() -> None:
    with pytest.raises(ValueError, match="not a CUDA architecture name: 'gfx90a'"):
        arch_runs_on("gfx90a", (9, 0))
    assert sm_name((7, 0)) == "sm_70"


def test_catalog_images_and_purposes() -> None:
    names = [i.name for i in all_images()]
    assert names == ["kaito-inference", "kaito-inference-cu12", "kaito-tuning", "kaito-tuning-cu12"]
    assert get_image("kaito-inference").runtimes == ("vllm",)
    assert get_image("kaito-inference-cu12").build.cuda.startswith("12.")
    assert get_image("kaito-inference").build.min_driver == "580.65.06"
    with pytest.raises(KeyError, match="unknown runtime image 'nope'"):
        get_image("nope")


def test_v100_gets_the_cuda12_images_and_turing_up_the_workspace_ones() -> None:
    v100 = get_sku("Standard_NC6s_v3")
    image, why = inference_image_for("transformers", v100)
    assert image is not None and image.name == "kaito-inference-cu12" and why == []
    image, why = inference_image_for("vllm", v100)
    assert image is None
    assert why[0].endswith("torch is built for sm_75 sm_80 sm_86 sm_90 sm_100 sm_120")
    tuning, why = tuning_image_for(v100, "qlora")
    assert tuning is not None and tuning.name == "kaito-tuning-cu12"
    assert "kaito-tuning (CUDA 13.0" in why[0]
    t4 = get_sku("Standard_NC4as_T4_v3")
    assert inference_image_for("vllm", t4)[0] == get_image("kaito-inference")
    assert tuning_image_for(t4)[0] == get_image("kaito-tuning")


def test_every_orderable_sku_has_an_inference_and_a_tuning_image() -> None:
    for sku in all_skus(include_retired=False):
        assert inference_image_for("transformers", sku)[0] is not None, sku.name
        assert tuning_image_for(sku, "qlora")[0] is not None, sku.name
    # Retired P100 (sm_60) and K80 (sm_37): nothing ships their kernels any more.
    for name in ("Standard_NC6s_v2", "Standard_NC6"):
        assert inference_image_for("transformers", get_sku(name))[0] is None


def _declared(**extra: Any) -> dict[str, Any]:
    image = {
        "name": "x",
        "purpose": "inference",
        "runtimes": ["vllm"],
        "dockerfile": "Dockerfile",
        "project": ".",
        "libraries": ["torch"],
        "note": "n",
        **extra,
    }
    return {"images": [image]}


_BUILD = {"packages": {"torch": "1"}, "cuda": "12.8", "min_driver": "525.60.13"}


def test_catalog_errors_name_the_image_and_the_fix() -> None:
    with pytest.raises(CatalogError, match=r"no entry for image 'x'; measure it with `uv run"):
        _build(_declared(), {"images": {}})
    with pytest.raises(CatalogError, match="no measured kernels for torch"):
        _build(_declared(), {"images": {"x": {**_BUILD, "kernels": {}}}})
    with pytest.raises(CatalogError, match="lists runtimes and no methods"):
        _build(
            _declared(methods=["lora"]),
            {"images": {"x": {**_BUILD, "kernels": {"torch": ["sm_80"]}}}},
        )
    with pytest.raises(CatalogError, match=r"measures unknown images \['y'\]"):
        _build(
            _declared(),
            {
                "images": {
                    "x": {**_BUILD, "kernels": {"torch": ["sm_80"]}},
                    "y": {**_BUILD, "kernels": {"torch": ["sm_80"]}},
                }
            },
        )
