"""What this release serves: one node, and multi-node plans refused with what they would be."""

from __future__ import annotations

import pytest
from kaito_presets.errors import DoesNotFit
from kaito_presets.presets import get_preset
from kaito_presets.serving import SERVING_MAX_NODES, MultiNodeNotSupported, plan_inference
from kaito_presets.skus import get_sku


def test_single_node_plans_pass_through() -> None:
    plan = plan_inference(get_preset("phi-3-mini-4k-instruct"), get_sku("Standard_NC6s_v3"))
    assert (plan.node_count, plan.runtime, plan.image) == (
        1,
        "transformers",
        "kaito-inference-cu12",
    )
    assert SERVING_MAX_NODES == 1


def test_multi_node_plan_is_refused_with_the_plan_and_single_node_skus() -> None:
    # llama-3.1-8b fits two one-T4 nodes (a 2-stage pipeline, test_estimator.py) but no T4 node.
    with pytest.raises(MultiNodeNotSupported) as info:
        plan_inference(get_preset("llama-3.1-8b-instruct"), get_sku("Standard_NC4as_T4_v3"))
    err = info.value
    assert isinstance(err, DoesNotFit)
    assert err.multi_node_plan.node_count == 2
    assert str(err).startswith(
        "llama-3.1-8b-instruct fits Standard_NC4as_T4_v3 only on 2 nodes of "
        "Standard_NC4as_T4_v3 (vllm float16, pipeline parallel 2 x tensor parallel 1), and "
        "multi-node inference is not supported yet"
    )
    assert err.suggestions[0] == "Standard_NV36ads_A10_v5"
    assert "instance types where it fits on one node: Standard_NV36ads_A10_v5" in str(err)


def test_nothing_fits_is_the_estimators_error() -> None:
    with pytest.raises(DoesNotFit) as info:
        plan_inference(get_preset("llama-3.3-70b-instruct"), get_sku("Standard_NC6s_v3"))
    assert not isinstance(info.value, MultiNodeNotSupported)
    assert "does not fit on Standard_NC6s_v3" in str(info.value)
