"""Model preset and GPU SKU catalog, GPU-fitting estimator and Workspace validation.

Import the submodules directly (``kaito_presets.skus``, ``kaito_presets.presets``,
``kaito_presets.estimator``, ``kaito_presets.validation``, ``kaito_presets.node_shape``); this
package root only re-exports the most used names.
"""

from kaito_presets.errors import DoesNotFit, PresetNotFound, PresetsError, SkuNotFound
from kaito_presets.node_shape import NodeShape, gpu_node_shape
from kaito_presets.skus import GpuSku, all_skus, get_sku

__version__ = "0.1.0"

__all__ = [
    "DoesNotFit",
    "GpuSku",
    "NodeShape",
    "PresetNotFound",
    "PresetsError",
    "SkuNotFound",
    "__version__",
    "all_skus",
    "get_sku",
    "gpu_node_shape",
]
