"""Multi-lead physiological signals, ECG first: loading records, standard filters, a 12-lead plot with the relevance
drawn on the signal, aggregation per lead and per time window, and a synthetic 12-lead demo (docs/ecg.md).

    from signxai.signals import load_record, bandpass, plot_ecg, per_lead
    rec = load_record("patient01.hea")                        # WFDB (pip install 'signxai[ecg]'), .npy or .csv
    x = bandpass(rec.signal, rec.fs, 0.5, 40)                 # (T, 12), zero-phase
    R = signxai.calculate_relevancemap(keras_model, x[None].astype("float32"), "lrpsign_epsilon_0_1")
    plot_ecg(x, R, rec.fs, rec.leads, layout="4x3", save="relevance.png")
    per_lead(R, rec.leads)["sum"]

Importing this package imports neither a deep-learning framework nor SciPy nor wfdb (each is imported when used).
"""
from signxai.signals.aggregate import as_time_by_leads_map, normalize_relevance, per_lead, per_window
from signxai.signals.filters import bandpass, highpass, lowpass, notch, remove_baseline_wander
from signxai.signals.io import STANDARD_LEADS, Record, as_time_by_leads, default_leads, load_record
from signxai.signals.plot import plot_ecg, relevance_colormap

__all__ = ["STANDARD_LEADS", "Record", "load_record", "as_time_by_leads", "default_leads", "bandpass", "highpass",
           "lowpass", "notch", "remove_baseline_wander", "as_time_by_leads_map", "normalize_relevance", "per_lead",
           "per_window", "plot_ecg", "relevance_colormap"]
