"""Framework-independent helpers: heatmaps and figures of relevance maps."""
from signxai.common.visualization import (
    normalize_relevance_map,
    overlay_heatmap,
    plot_timeseries_relevance,
    relevance_to_heatmap,
    visualize_comparison,
)

__all__ = [
    "normalize_relevance_map",
    "overlay_heatmap",
    "plot_timeseries_relevance",
    "relevance_to_heatmap",
    "visualize_comparison",
]
