"""Loading ECG (and other multi-lead) records: WFDB, ``.npy`` and CSV (docs/ecg.md#loading-records).

Every loader returns a :class:`Record`: the signal as a float64 array of shape ``(T, leads)`` (time first, one column
per lead, physical units as stored), the sampling rate in Hz and the lead names. WFDB needs the optional ``wfdb``
package (``pip install 'signxai[ecg]'``), imported only when a WFDB record is read.

A problem with the file raises :class:`signxai.loading.InputError` with a one-line message that says what was wrong
and how to fix it (the command line prints it as ``signxai: error: ...``).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from signxai.loading import InputError, one_line

STANDARD_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
"""The standard 12-lead order (limb leads, augmented limb leads, precordial leads)."""

WFDB_SUFFIXES = (".hea", ".dat", ".mat", "")
_TIME_COLUMNS = ("time", "t", "time_s", "seconds", "sec", "s")


@dataclass(frozen=True)
class Record:
    """One record: ``signal`` of shape ``(T, leads)`` (float64), sampling rate ``fs`` in Hz, lead names."""

    signal: np.ndarray
    fs: float
    leads: tuple[str, ...]
    name: str = ""
    units: tuple[str, ...] = field(default=())

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.signal.shape[0] / self.fs


def default_leads(n: int) -> tuple[str, ...]:
    """The standard 12-lead names for 12 leads, else ``lead 1`` ... ``lead n``."""
    return STANDARD_LEADS if n == 12 else tuple(f"lead {i + 1}" for i in range(n))


def check_leads(leads, n: int) -> tuple[str, ...]:
    """``leads`` as a tuple of ``n`` names (None: :func:`default_leads`); a clear error for a wrong count."""
    if leads is None:
        return default_leads(n)
    leads = tuple(str(name) for name in leads)
    if len(leads) != n:
        raise InputError(f"{len(leads)} lead names given for a signal with {n} leads")
    return leads


def as_time_by_leads(signal, layout: str = "auto") -> np.ndarray:
    """A 1-D or 2-D array as ``(T, leads)`` float64 (a copy).

    ``layout``: ``"time_first"`` (``(T, leads)``, the Keras layout), ``"leads_first"`` (``(leads, T)``, the PyTorch
    layout) or ``"auto"``: a 2-D array with more columns than rows is taken as ``(leads, T)`` (a record has more
    time steps than leads), else as ``(T, leads)``. A 1-D array is one lead. A leading batch axis of size 1 is
    dropped.
    """
    x = np.asarray(signal)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise InputError(f"a record must be 1-D (one lead) or 2-D (time x leads); got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise InputError(f"a record must hold real numbers, not {x.dtype}")
    if layout not in ("auto", "time_first", "leads_first"):
        raise InputError(f"layout must be 'auto', 'time_first' or 'leads_first', not {layout!r}")
    if layout == "leads_first" or (layout == "auto" and x.shape[1] > x.shape[0]):
        x = x.T
    if x.shape[0] < 2:
        raise InputError(f"a record needs at least 2 time steps; got shape {x.shape} as (time, leads)")
    return np.array(x, dtype=np.float64)


def _finite(x: np.ndarray, path) -> np.ndarray:
    if not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        raise InputError(f"{path}: the signal holds NaN or infinite values (first at time step {bad[0]}, lead "
                         f"{bad[1]}); fill or crop them before explaining")
    return x


def load_record(path, fs: float | None = None, leads=None, layout: str = "auto") -> Record:
    """Read a record from a WFDB header (``.hea``; also the ``.dat`` file or the record name without suffix), a
    ``.npy`` array or a ``.csv`` table.

    * **WFDB**: sampling rate, lead names and physical units from the header (``fs``/``leads`` override them).
    * **.npy**: a 1-D or 2-D array, ``(T, leads)`` or ``(leads, T)`` (``layout``, see :func:`as_time_by_leads`);
      ``fs`` is required.
    * **.csv**: one column per lead, one row per time step, comma- or semicolon-separated. A first row that is not
      numeric is the header with the lead names; a first column named ``time`` (or ``t``, ``time_s``, ``seconds``)
      holds the time in seconds, from which ``fs`` is inferred when not given. Otherwise ``fs`` is required.

    Lead names default to the standard 12-lead names for 12 leads (:data:`STANDARD_LEADS`), else ``lead 1``....
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _load_npy(path, fs, leads, layout)
    if suffix in (".csv", ".txt"):
        return _load_csv(path, fs, leads)
    if suffix in WFDB_SUFFIXES:
        return _load_wfdb(path, fs, leads)
    raise InputError(f"unknown record format {path.name!r}: use a WFDB header (.hea), .npy or .csv")


def _check_fs(fs, path) -> float:
    if fs is None:
        raise InputError(f"{path}: the sampling rate is not stored in this format; give it (fs=..., --fs HZ)")
    fs = float(fs)
    if not np.isfinite(fs) or fs <= 0:
        raise InputError(f"the sampling rate must be a positive number of Hz, not {fs}")
    return fs


def _load_npy(path: Path, fs, leads, layout) -> Record:
    if not path.is_file():
        raise InputError(f"no such record file: {path}")
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as error:
        raise InputError(f"cannot read {path} as a NumPy array: {one_line(error)}") from error
    signal = _finite(as_time_by_leads(x, layout), path)
    return Record(signal, _check_fs(fs, path), check_leads(leads, signal.shape[1]), path.stem)


def _load_csv(path: Path, fs, leads) -> Record:
    if not path.is_file():
        raise InputError(f"no such record file: {path}")
    text = path.read_text(encoding="utf-8-sig")
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    rows = [row for row in csv.reader(text.splitlines(), delimiter=delimiter) if any(cell.strip() for cell in row)]
    if not rows:
        raise InputError(f"{path} is empty")
    header = None
    if not _numeric(rows[0]):
        header, rows = [cell.strip() for cell in rows[0]], rows[1:]
    width = len(rows[0]) if rows else 0
    for i, row in enumerate(rows):
        if len(row) != width:
            raise InputError(f"{path}: row {i + 1 + (header is not None)} has {len(row)} values, the first has "
                             f"{width}")
        if not _numeric(row):
            raise InputError(f"{path}: row {i + 1 + (header is not None)} holds a value that is not a number: {row}")
    if len(rows) < 2:
        raise InputError(f"{path}: a record needs at least 2 rows of samples")
    x = np.array([[float(cell) for cell in row] for row in rows])
    if header is not None and len(header) != width:
        raise InputError(f"{path}: the header names {len(header)} columns, the rows have {width}")
    if header is not None and header[0].lower() in _TIME_COLUMNS:
        time, x, header = x[:, 0], x[:, 1:], header[1:]
        steps = np.diff(time)
        if not (steps > 0).all():
            raise InputError(f"{path}: the time column must increase from row to row")
        if fs is None:
            fs = 1.0 / float(np.median(steps))
    if x.shape[1] == 0:
        raise InputError(f"{path}: no lead columns")
    signal = _finite(x, path)
    return Record(signal, _check_fs(fs, path), check_leads(leads if leads is not None else header, x.shape[1]),
                  path.stem)


def _numeric(row) -> bool:
    try:
        [float(cell) for cell in row]
    except ValueError:
        return False
    return True


def import_wfdb():
    """The ``wfdb`` package, or an :class:`InputError` naming the extra that installs it."""
    try:
        import wfdb
    except ImportError as error:
        raise InputError("reading WFDB records needs the wfdb package: pip install 'signxai[ecg]'") from error
    return wfdb


def _load_wfdb(path: Path, fs, leads) -> Record:
    base = path.with_suffix("") if path.suffix.lower() in (".hea", ".dat", ".mat") else path
    header = base.with_suffix(".hea")
    if not header.is_file():
        raise InputError(f"no WFDB header {header} (a WFDB record is read from its .hea file)")
    wfdb = import_wfdb()
    try:
        record = wfdb.rdrecord(str(base))
    except Exception as error:
        raise InputError(f"cannot read the WFDB record {base}: {one_line(error)}") from error
    if record.p_signal is None:
        raise InputError(f"the WFDB record {base} has no physical signal")
    signal = _finite(np.array(record.p_signal, dtype=np.float64), header)
    names = leads if leads is not None else record.sig_name
    return Record(signal, _check_fs(fs if fs is not None else record.fs, header),
                  check_leads(names, signal.shape[1]), base.name, tuple(record.units or ()))

