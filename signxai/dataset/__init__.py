"""Explaining whole datasets: streaming, resumable, on one machine or on Ray Data.

    result = signxai.explain_dataset(model, "ecgs.npy", ["gradient", "lrp_epsilon_0_1"], "maps.zarr")
    results = signxai.dataset.load_results("maps.zarr")   # .maps[method], .logits, .predictions, .targets, .valid

Zarr, pyarrow, tqdm and Ray are imported only when a job needs them (extras ``signxai[dataset]``, ``signxai[ray]``).
"""
from signxai.dataset.explain import DatasetResult, DatasetResults, explain_dataset, load_results

__all__ = ["DatasetResult", "DatasetResults", "explain_dataset", "load_results"]
