"""Helpers kept from signxai 1.x."""
from signxai.utils.utils import (
    aggregate_and_normalize_relevancemap_rgb,
    load_image,
    normalize_heatmap,
    remove_softmax,
)

__all__ = ["aggregate_and_normalize_relevancemap_rgb", "load_image", "normalize_heatmap", "remove_softmax"]
