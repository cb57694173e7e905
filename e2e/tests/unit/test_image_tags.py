"""The charts' and the controller's default images are the ones `make images` builds.

The image catalog (`kaito_e2e.images.catalog`) tags every product image
`kaito-py/<name>:<package version>`; the charts and the controller name them under the public
prefix `ghcr.io/kaito-py`. A default whose repository or tag drifts from the catalog would
install an image that was never built.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from kaito_controller.settings import ControllerSettings
from kaito_e2e.imagebuild import load_pins, package_versions
from kaito_e2e.images import ImageSpec, catalog

ROOT = Path(__file__).resolve().parents[3]
PUBLIC_PREFIX = "ghcr.io/"


def images() -> dict[str, ImageSpec]:
    return catalog(load_pins(), package_versions())


def public(short: str) -> str:
    """The public name of a catalog image: ``ghcr.io/kaito-py/<name>:<tag>``."""
    spec = images()[short]
    assert spec.repository.startswith("kaito-py/"), spec.repository
    return f"{PUBLIC_PREFIX}{spec.repository}:{spec.tag}"


def package_version(directory: str) -> str:
    with (ROOT / "packages" / directory / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def values(chart: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "charts" / chart / "values.yaml").read_text())


def chart_meta(chart: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "charts" / chart / "Chart.yaml").read_text())


def test_the_catalog_builds_every_image_package_at_its_version() -> None:
    products = {s.short: s for s in images().values() if s.group == "product"}
    packages = {
        s.dockerfile.split("/")[1]: s
        for s in products.values()
        if s.dockerfile and s.dockerfile.startswith("packages/")
    }
    assert set(packages) == {
        "kaito-controller",
        "gpu-provisioner",
        "inference-server",
        "tuning-job",
    }
    for directory, spec in packages.items():
        assert spec.tag == package_version(directory), spec.short
    for spec in products.values():
        assert spec.repository.startswith("kaito-py/"), spec.short


@pytest.mark.parametrize(
    ("chart", "short", "package"),
    [
        ("kaito-workspace", "controller", "kaito-controller"),
        ("gpu-provisioner", "provisioner", "gpu-provisioner"),
    ],
)
def test_chart_default_image_is_the_built_one(chart: str, short: str, package: str) -> None:
    image = values(chart)["image"]
    tag = image["tag"] or chart_meta(chart)["appVersion"]
    assert f"{image['repository']}:{tag}" == public(short)
    assert chart_meta(chart)["appVersion"] == package_version(package)


def test_workload_images_are_the_built_ones() -> None:
    workload = values("kaito-workspace")["workload"]
    assert workload["inferenceImage"] == public("inference")
    assert workload["tuningImage"] == public("tuning")


def test_controller_defaults_are_the_built_ones() -> None:
    settings = ControllerSettings()
    assert settings.inference_image == public("inference")
    assert settings.tuning_image == public("tuning")
