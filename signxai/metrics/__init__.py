"""Explanation-quality metrics that give the same numbers on Keras 3 and PyTorch twins.

* :func:`pixel_flipping` — features removed in order of relevance, replaced by uniform noise; the area over the
  softmax curve of the explained class (higher = more faithful) against a random-order baseline (SIGN paper).
* :func:`token_flipping` — the same for models that take token ids: tokens replaced by a padding token or random
  ids in order of relevance (docs/transformers.md#text-faithfulness).
* :func:`input_bias_correlation` — Pearson and Spearman correlation between ``|x|`` and ``|R|`` per sample.
* :func:`model_parameter_randomisation` — Adebayo et al.'s cascading randomisation sanity check (Spearman, SSIM).
* :mod:`signxai.metrics.similarity` — the per-sample ``pearson``, ``spearman`` and ``ssim`` they use.

Every metric takes ``(model, X, R)``: a classifier that outputs logits, a batch in the model's own layout
(channels-last for Keras, channels-first for PyTorch) and the maps in the same shape and layout — or a method name,
whose maps are computed with ``signxai.calculate_relevancemaps``. Internally everything runs in the canonical
channels-last layout, in float64 NumPy, with private random streams; results are NumPy arrays, one value per sample.
The caller's model and arrays are never modified.
"""
from signxai.metrics.input_bias import InputBiasResult, input_bias_correlation
from signxai.metrics.pixel_flipping import PixelFlippingResult, area_over_curve, pixel_flipping, removal_counts
from signxai.metrics.token_flipping import token_flipping
from signxai.metrics.randomisation import RandomisationResult, model_parameter_randomisation, randomised_copy
from signxai.metrics.similarity import pearson, spearman, ssim

__all__ = ["pixel_flipping", "PixelFlippingResult", "area_over_curve", "removal_counts", "token_flipping",
           "input_bias_correlation", "InputBiasResult",
           "model_parameter_randomisation", "RandomisationResult", "randomised_copy",
           "pearson", "spearman", "ssim"]
