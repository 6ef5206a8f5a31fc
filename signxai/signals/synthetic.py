"""A small, seeded 12-lead ECG simulator for demos and tests (docs/ecg.md#synthetic-ecg). Nothing is downloaded.

**The model.** The heart is one electric dipole whose 3-D moment is a sum of Gaussian waves per beat: P, Q, R, S and
T, each with a time offset from the R peak, a width and a direction (x = the patient's left, y = inferior,
z = anterior). The limb leads are projections onto the frontal plane, I at 0° and II at 60°, and the rest follow by
Einthoven's and Goldberger's relations (III = II − I, aVR = −(I + II)/2, aVL = I − II/2, aVF = II − I/2); the
precordial leads V1–V6 are projections onto directions in the horizontal plane from 115° (V1, anterior-right) to 0°
(V6, left), 1.5× larger (the electrodes are closer to the heart). This reproduces the textbook shapes: an upright QRS
in I, II and V5–V6, a negative one in aVR, an rS complex in V1 and the R-wave progression across the chest.

**Variability** (per record, from ``numpy.random.default_rng(seed)``): heart rate 55–95 bpm with 3 % beat-to-beat
variation, wave amplitudes ×0.8–1.2, the electrical axis rotated by up to ±20°, white noise (σ = 0.02 mV) and
baseline wander (two sines below 0.5 Hz, up to 0.15 mV per lead).

**Two classes.** ``0 = "normal"``; ``1 = "ST elevation"``: an elevated ST segment (0.15–0.35 mV, a plateau from the
J point, 60 ms after the R peak, into the T wave) added to leads V1–V4 only (an anterior injury pattern), so the
evidence of class 1 is planted in four known leads and a known part of every beat (:data:`ST_LEADS`,
:func:`st_mask`).

This is a teaching signal, not a physiological model: it has no conduction disorders, no respiration-driven axis
changes and no reciprocal ST depression.
"""
from __future__ import annotations

import numpy as np

from signxai.signals.io import STANDARD_LEADS

CLASS_NAMES = ("normal", "ST elevation")
ST_LEADS = ("V1", "V2", "V3", "V4")
"""The leads that carry the planted ST elevation of class 1."""
ST_WINDOW = (0.06, 0.30)
"""The ST elevation's span, seconds after each R peak (it rises at the J point and fades into the T wave)."""

# wave: (offset from the R peak in s, width σ in s, amplitude in mV, direction (x left, y inferior, z anterior))
_WAVES = {
    "P": (-0.20, 0.025, 0.15, (0.55, 0.80, 0.20)),
    "Q": (-0.035, 0.010, 0.15, (-0.60, -0.20, 0.75)),
    "R": (0.0, 0.014, 1.30, (0.50, 0.75, -0.45)),
    "S": (0.035, 0.013, 0.45, (-0.35, -0.45, -0.80)),
    "T": (0.28, 0.055, 0.35, (0.60, 0.55, 0.30)),
}
_PRECORDIAL_DEGREES = (115.0, 90.0, 65.0, 40.0, 15.0, 0.0)
_PRECORDIAL_GAIN = 1.5


def lead_matrix() -> np.ndarray:
    """The ``(3, 12)`` projection from the dipole (x, y, z) to the standard leads (columns in STANDARD_LEADS
    order)."""
    lead_i = np.array([1.0, 0.0, 0.0])
    lead_ii = np.array([np.cos(np.pi / 3), np.sin(np.pi / 3), 0.0])
    limb = [lead_i, lead_ii, lead_ii - lead_i, -(lead_i + lead_ii) / 2, lead_i - lead_ii / 2, lead_ii - lead_i / 2]
    chest = [_PRECORDIAL_GAIN * np.array([np.cos(np.radians(a)), 0.1, np.sin(np.radians(a))])
             for a in _PRECORDIAL_DEGREES]
    return np.stack(limb + chest, axis=1)


def _rotation(angle: float) -> np.ndarray:
    """Rotation about the anterior axis z (the frontal-plane electrical axis)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def simulate_ecg(rng: np.random.Generator, duration: float = 10.0, fs: float = 100.0, st_elevation: float = 0.0,
                 noise: float = 0.02, wander: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """One record ``(T, 12)`` in mV (standard lead order) and the R-peak times in seconds.

    ``st_elevation`` (mV) adds the ST elevation of class 1 to V1–V4 (0: a normal record)."""
    n = int(round(duration * fs))
    t = np.arange(n) / fs
    rate = rng.uniform(55, 95) / 60.0  # beats per second
    beats, time = [], rng.uniform(0.25, 1.0 / rate + 0.25)
    while time < duration + 0.5:
        beats.append(time)
        time += (1.0 / rate) * (1 + 0.03 * rng.standard_normal())
    peaks = np.array(beats)
    rotation = _rotation(np.radians(rng.uniform(-20, 20)))
    dipole = np.zeros((n, 3))
    for offset, width, amplitude, direction in _WAVES.values():
        vector = rotation @ (np.asarray(direction) / np.linalg.norm(direction)) * amplitude * rng.uniform(0.8, 1.2)
        for peak in peaks:
            dipole += np.exp(-0.5 * ((t - peak - offset) / width) ** 2)[:, None] * vector
    ecg = dipole @ lead_matrix()
    if st_elevation:
        plateau = st_shape(t, peaks)
        for name in ST_LEADS:
            ecg[:, STANDARD_LEADS.index(name)] += st_elevation * plateau
    for lead in range(12):
        for _ in range(2):
            frequency, phase = rng.uniform(0.05, 0.45), rng.uniform(0, 2 * np.pi)
            ecg[:, lead] += rng.uniform(0, wander / 2) * np.sin(2 * np.pi * frequency * t + phase)
    ecg += noise * rng.standard_normal(ecg.shape)
    return ecg, peaks


def st_shape(t: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """The ST elevation's time course (0 to 1): a smooth plateau over :data:`ST_WINDOW` after every R peak (a
    raised-cosine rise of 30 ms at the J point and fall of 80 ms into the T wave)."""
    start, stop = ST_WINDOW
    rise, fall = 0.03, 0.08
    shape = np.zeros_like(t)
    for peak in peaks:
        u = t - peak
        up = np.clip((u - start) / rise, 0, 1)
        down = np.clip((stop - u) / fall, 0, 1)
        shape = np.maximum(shape, 0.5 - 0.5 * np.cos(np.pi * np.minimum(up, down)))
    return shape


def st_mask(t: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """``(T, 12)`` booleans: where the planted ST evidence lies (leads V1–V4, ST window of each beat)."""
    mask = np.zeros((len(t), 12), dtype=bool)
    inside = st_shape(t, peaks) > 0
    for name in ST_LEADS:
        mask[:, STANDARD_LEADS.index(name)] = inside
    return mask


def make_dataset(n: int, seed: int, duration: float = 10.0, fs: float = 100.0, baseline_filter: bool = True):
    """``(x, y, peaks)``: ``n`` records ``(n, T, 12)`` float32 (channels-last), balanced labels (0 normal, 1 ST
    elevation; alternating, then shuffled) and each record's R-peak times. Records get their own seed stream
    (``SeedSequence(seed).spawn``), so record ``i`` is the same whatever ``n``. ``baseline_filter`` removes the
    baseline wander (:func:`signxai.signals.filters.remove_baseline_wander`, 0.5 Hz) as a recording pipeline would.
    """
    from signxai.signals.filters import remove_baseline_wander

    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]
    order = np.random.default_rng(seed).permutation(n)
    labels = (np.arange(n) % 2)[order]
    records, peak_list = [], []
    for label, rng in zip(labels, streams):
        elevation = rng.uniform(0.15, 0.35) if label == 1 else 0.0
        ecg, peaks = simulate_ecg(rng, duration, fs, elevation)
        records.append(remove_baseline_wander(ecg, fs) if baseline_filter else ecg)
        peak_list.append(peaks)
    return np.stack(records).astype(np.float32), labels.astype(np.int64), peak_list
