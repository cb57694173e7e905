"""The charts' and the controller's default images are the ones `make images` builds.

hack/build-images.sh tags every image `<registry>/<name>:<package version>`; a chart whose default
tag drifts from its package's version would install an image that was never built.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from kaito_controller.settings import ControllerSettings

ROOT = Path(__file__).resolve().parents[3]
REGISTRY = "ghcr.io/kaito-py"


def package_version(directory: str) -> str:
    with (ROOT / "packages" / directory / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def built_images() -> dict[str, str]:
    """image name -> package directory, as listed in hack/build-images.sh."""
    script = (ROOT / "hack/build-images.sh").read_text()
    return dict(re.findall(r'^\s+"([\w-]+) packages/([\w-]+) Dockerfile[.\w]*"$', script, re.M))


def expected(name: str) -> str:
    return f"{REGISTRY}/{name}:{package_version(built_images()[name])}"


def values(chart: str) -> dict:
    return yaml.safe_load((ROOT / "charts" / chart / "values.yaml").read_text())


def chart_meta(chart: str) -> dict:
    return yaml.safe_load((ROOT / "charts" / chart / "Chart.yaml").read_text())


def test_build_script_lists_every_image_package() -> None:
    assert set(built_images().values()) == {
        "kaito-controller",
        "gpu-provisioner",
        "inference-server",
        "tuning-job",
    }


@pytest.mark.parametrize(
    ("chart", "name"),
    [("kaito-workspace", "kaito-controller"), ("gpu-provisioner", "gpu-provisioner")],
)
def test_chart_default_image_is_the_built_one(chart: str, name: str) -> None:
    image = values(chart)["image"]
    tag = image["tag"] or chart_meta(chart)["appVersion"]
    assert f"{image['repository']}:{tag}" == expected(name)
    assert chart_meta(chart)["appVersion"] == package_version(built_images()[name])


def test_workload_images_match_packages() -> None:
    workload = values("kaito-workspace")["workload"]
    assert workload["inferenceImage"] == expected("kaito-inference")
    assert workload["tuningImage"] == expected("kaito-tuning")


def test_controller_defaults_match_the_chart() -> None:
    settings = ControllerSettings()
    assert settings.inference_image == expected("kaito-inference")
    assert settings.tuning_image == expected("kaito-tuning")
