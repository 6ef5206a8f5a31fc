"""Dataset sources: random access to chunks of samples without ever loading the whole dataset.

Every source is a sequence of ``n`` samples of one shape, read chunk by chunk with :meth:`Source.read`. A sample
that cannot be read (an unreadable file, a null Parquet row, non-finite values) is reported in the chunk's ``errors``
with its path and leaves a zero row with ``ok == False``; the job decides (``on_error=``) whether that is fatal.
Sources are picklable (the Ray engine sends them to its actors): they hold paths and metadata, not open files.
"""
from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
PARQUET_SUFFIXES = (".parquet", ".pq")
_GLOB_CHARS = "*?["
_SAMPLED_ROWS = 16  # rows hashed for a source's identity


@dataclass
class Chunk:
    """Rows ``start:start+len(x)`` of a source: float32 samples, which rows were read, and what went wrong."""

    x: np.ndarray
    ok: np.ndarray
    errors: list = field(default_factory=list)  # [{"index": i, "path": "...", "error": "..."}]


class Source:
    """``n`` samples of shape ``sample_shape``; subclasses implement ``_read`` and ``identity``."""

    kind = "source"
    n: int
    sample_shape: tuple

    def read(self, start: int, stop: int) -> Chunk:
        """Rows ``start:stop`` as float32; rows with non-finite values are reported and zeroed."""
        chunk = self._read(start, stop)
        flat = chunk.x.reshape(len(chunk.x), -1)
        finite = np.isfinite(flat).all(axis=1) if flat.size else np.ones(len(flat), bool)
        for row in np.flatnonzero(chunk.ok & ~finite):
            count = int((~np.isfinite(flat[row])).sum())
            chunk.errors.append(_error(start + row, self.label(start + row),
                                       f"contains {count} non-finite value(s) (NaN or inf)"))
            chunk.ok[row] = False
            chunk.x[row] = 0
        chunk.errors.sort(key=lambda e: e["index"])
        return chunk

    def label(self, index: int) -> str:
        """How a sample is named in error messages."""
        return f"{self.kind}[{index}]"

    def files(self):
        """The file of each sample (relative names), or None for array-like sources."""
        return None

    def identity(self) -> dict:
        """What a resumed run must find unchanged (JSON)."""
        raise NotImplementedError

    def _read(self, start: int, stop: int) -> Chunk:
        raise NotImplementedError


def _error(index, path, message) -> dict:
    return {"index": int(index), "path": str(path), "error": " ".join(str(message).split())}


def _check_dtype(dtype, what) -> None:
    if not (np.issubdtype(dtype, np.number) or dtype == np.bool_) or np.issubdtype(dtype, np.complexfloating):
        raise ValueError(f"{what} has dtype {dtype}; samples must be real numbers (store them as float32)")


def _integral(dtype) -> bool:
    return bool(np.issubdtype(dtype, np.integer) or dtype == np.bool_)


def _sampled_rows(n):
    return sorted(set(np.linspace(0, n - 1, min(n, _SAMPLED_ROWS)).round().astype(int).tolist())) if n else []


# ----------------------------------------------------------------------------------------------------- arrays
class ArraySource(Source):
    """A NumPy array (or anything ``np.asarray`` takes without copying, such as a CPU tensor) of shape (N, ...)."""

    kind = "array"

    def __init__(self, array, min_ndim=2):
        array = array if isinstance(array, np.ndarray) else np.asarray(array)
        _check_dtype(array.dtype, "the source array")
        if array.ndim < min_ndim:  # 1: an input of a multi-input model may hold one number per sample
            raise ValueError(f"the source array has shape {array.shape}; give a batch of shape (N, ...) with the "
                             f"samples along the first axis")
        self.array, self.n, self.sample_shape = array, len(array), tuple(array.shape[1:])
        self.keep_integers = False  # set by MultiSource: a held-fixed input of indices stays int64

    def _read(self, start, stop):
        dtype = np.int64 if self.keep_integers and _integral(self.array.dtype) else np.float32
        x = np.array(self.array[start:stop], dtype=dtype, copy=True)
        return Chunk(x, np.ones(len(x), bool))

    def identity(self):
        digest = hashlib.blake2b(digest_size=16)
        for row in _sampled_rows(self.n):
            digest.update(np.ascontiguousarray(self.array[row]).tobytes())
        return {"kind": self.kind, "n": self.n, "sample_shape": list(self.sample_shape),
                "dtype": str(self.array.dtype), "sampled_hash": digest.hexdigest()}


class NpySource(Source):
    """A ``.npy`` file of shape (N, ...), read chunk by chunk with positional reads (never loaded whole; the pages
    read are not kept mapped, so the resident memory stays bounded by the chunk size)."""

    kind = "npy"

    def __init__(self, path, min_ndim=2):
        self.path = Path(path)
        try:
            mapped = np.load(self.path, mmap_mode="r")
        except Exception as error:
            raise ValueError(f"cannot read the .npy file {self.path}: {error}") from error
        if not isinstance(mapped, np.memmap) and not isinstance(mapped, np.ndarray):
            raise ValueError(f"{self.path} is not a .npy array file")
        _check_dtype(mapped.dtype, str(self.path))
        if mapped.ndim < min_ndim:
            raise ValueError(f"{self.path} holds an array of shape {mapped.shape}; a .npy source must hold a batch "
                             f"(N, ...) with the samples along the first axis")
        self.n, self.sample_shape, self.dtype = len(mapped), tuple(mapped.shape[1:]), mapped.dtype
        self.fortran = bool(mapped.flags.f_contiguous and not mapped.flags.c_contiguous)
        self.offset = int(getattr(mapped, "offset", 0))
        self.row_items = int(np.prod(self.sample_shape))
        self.keep_integers = False  # set by MultiSource: a held-fixed input of indices stays int64
        del mapped

    def label(self, index):
        return f"{self.path}[{index}]"

    def _read(self, start, stop):
        count = stop - start
        wanted = np.int64 if self.keep_integers and _integral(self.dtype) else np.float32
        if self.fortran:  # rare: a Fortran-ordered file has no contiguous rows
            mapped = np.load(self.path, mmap_mode="r")
            x = np.array(mapped[start:stop], dtype=wanted)
            del mapped
        else:
            with open(self.path, "rb") as file:
                file.seek(self.offset + start * self.row_items * self.dtype.itemsize)
                data = np.fromfile(file, dtype=self.dtype, count=count * self.row_items)
            if data.size != count * self.row_items:
                raise ValueError(f"{self.path} is truncated: rows {start}..{stop - 1} are missing")
            x = data.reshape(count, *self.sample_shape).astype(wanted)
        return Chunk(x, np.ones(count, bool))

    def identity(self):
        digest = hashlib.blake2b(digest_size=16)
        row_bytes = self.row_items * self.dtype.itemsize
        with open(self.path, "rb") as file:
            for row in _sampled_rows(self.n):
                file.seek(self.offset + row * row_bytes)
                digest.update(file.read(min(row_bytes, 1 << 16)))
        return {"kind": self.kind, "n": self.n, "sample_shape": list(self.sample_shape), "dtype": str(self.dtype),
                "bytes": self.path.stat().st_size, "sampled_hash": digest.hexdigest()}


# ------------------------------------------------------------------------------------------------------ files
class _ModelMismatch(ValueError):
    pass


class FilesSource(Source):
    """One sample per file: all images (converted as ``signxai explain`` converts them: RGB or grayscale as the
    model needs, resized to its input size, scaled to [0, 1]) or all ``.npy`` files of one shape."""

    kind = "files"

    def __init__(self, paths, model_info=None, *, image_size=None, caffe=False, on_error="raise"):
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ValueError("the source holds no files")
        suffixes = {p.suffix.lower() for p in self.paths}
        unsupported = sorted(suffixes - {".npy", *IMAGE_SUFFIXES})
        if unsupported:
            example = next(p for p in self.paths if p.suffix.lower() in unsupported)
            raise ValueError(f"unsupported file type {example.suffix or '(none)'!r} ({example}): a file source "
                             f"holds images ({', '.join(IMAGE_SUFFIXES)}) or .npy files")
        if ".npy" in suffixes and len(suffixes) > 1:
            image = next(p for p in self.paths if p.suffix.lower() != ".npy")
            array = next(p for p in self.paths if p.suffix.lower() == ".npy")
            raise ValueError(f"the source mixes .npy files ({array}) and images ({image}); give one kind")
        self.images = ".npy" not in suffixes
        self.model_info, self.image_size, self.caffe = model_info, image_size, caffe
        root = Path(os.path.commonpath([str(p.resolve().parent) for p in self.paths]))
        self.names = [os.path.relpath(p.resolve(), root) for p in self.paths]
        self.broken = {}  # index -> why the file could not be opened at all
        self._scan(on_error)
        self.n = len(self.paths)

    # --- scanning: every file's header, before any computation
    def _scan(self, on_error):
        reference = None  # (index, shape or size) of the first readable file
        for i, path in enumerate(self.paths):
            try:
                info = self._header(path)
            except Exception as error:
                if on_error == "raise":
                    raise ValueError(f"cannot read {path}: {' '.join(str(error).split())} (fix or remove the "
                                     f"file, or pass on_error='skip' to skip unreadable files)") from error
                self.broken[i] = f"cannot read the file: {error}"
                continue
            if reference is None:
                reference = (i, info)
            elif info != reference[1] and info is not None:
                what = "an array of shape" if not self.images else "an image of size"
                hint = ("every .npy file must hold one sample of the same shape" if not self.images else
                        "the model declares no input size, so images keep their size: pass image_size=(H, W) "
                        "(--size H W)")
                raise ValueError(f"mixed shapes: {path} holds {what} {info}, but {self.paths[reference[0]]} holds "
                                 f"{reference[1]}; {hint}")
        for i in range(reference[0] if reference is not None else len(self.paths), len(self.paths)):
            if i in self.broken:
                continue
            try:
                self.sample_shape = tuple(self._load(self.paths[i]).shape)  # the first sample that loads
                return
            except _ModelMismatch:
                raise
            except Exception as error:
                if on_error == "raise":
                    raise ValueError(f"cannot read {self.paths[i]}: {' '.join(str(error).split())} (fix or remove "
                                     f"the file, or pass on_error='skip' to skip unreadable files)") from error
                self.broken[i] = f"cannot read the file: {error}"
        first = min(self.broken)
        raise ValueError(f"none of the {len(self.paths)} files of the source can be read (first: "
                         f"{self.paths[first]}: {self.broken[first]})")

    def _header(self, path):
        if not self.images:
            mapped = np.load(path, mmap_mode="r")
            _check_dtype(mapped.dtype, str(path))
            shape = tuple(mapped.shape)
            del mapped
            return shape
        from PIL import Image

        with Image.open(path) as image:
            size = image.size
            image.verify()
        fixed = self.image_size or self._model_size()
        return None if fixed else (size[1], size[0])

    def _model_size(self):
        shape = getattr(self.model_info, "input_shape", None)
        if shape is None or len(shape) not in (2, 3):
            return None
        height, width = (shape if len(shape) == 2 else shape[1:] if self.model_info.channels_first else shape[:2])
        return (height, width) if height and width else None

    def _load(self, path):
        if not self.images:
            x = np.load(path, allow_pickle=False)
            _check_dtype(x.dtype, str(path))
            return np.asarray(x, dtype=np.float32)
        from signxai.loading import InputError, load_image

        if self.model_info is None:  # one input of a multi-input model: no per-input image layout is known
            raise _ModelMismatch("images are not read as one input of a multi-input model (its layout and size per "
                                 "input are unknown): give that input as .npy files or an array "
                                 "(docs/api.md#multi-input-datasets)")
        try:
            return np.asarray(load_image(path, self.model_info, self.caffe, self.image_size), dtype=np.float32)
        except InputError as error:  # the model cannot take images (or not these): not a problem of one file
            raise _ModelMismatch(str(error)) from None

    def label(self, index):
        return str(self.paths[index])

    def files(self):
        return list(self.names)

    def _read(self, start, stop):
        x = np.zeros((stop - start, *self.sample_shape), np.float32)
        ok = np.zeros(stop - start, bool)
        errors = []
        for row, i in enumerate(range(start, stop)):
            if i in self.broken:
                errors.append(_error(i, self.paths[i], self.broken[i]))
                continue
            try:
                sample = self._load(self.paths[i])
                if sample.shape != self.sample_shape:
                    raise ValueError(f"mixed shapes: it holds a sample of shape {sample.shape}, the others "
                                     f"{self.sample_shape}")
            except Exception as error:
                errors.append(_error(i, self.paths[i], f"cannot read the file: {error}"))
                continue
            x[row], ok[row] = sample, True
        return Chunk(x, ok, errors)

    def identity(self):
        digest = hashlib.blake2b(digest_size=16)
        for name, path in zip(self.names, self.paths):
            size = path.stat().st_size if path.exists() else -1
            digest.update(f"{name}\t{size}\n".encode())
        return {"kind": self.kind, "n": self.n, "sample_shape": list(self.sample_shape),
                "images": self.images, "image_size": list(self.image_size) if self.image_size else None,
                "caffe": bool(self.caffe), "files_hash": digest.hexdigest()}


# ---------------------------------------------------------------------------------------------------- parquet
class ParquetSource(Source):
    """A Parquet table with one tensor per row in ``column``: an Arrow ``fixed_shape_tensor`` or nested
    (fixed-size) lists of numbers; ``shape=`` reshapes flat rows. Read one row group at a time."""

    kind = "parquet"

    def __init__(self, path, column=None, shape=None):
        pq = _pyarrow_parquet()
        self.path, self.shape = Path(path), tuple(shape) if shape is not None else None
        try:
            parquet = pq.ParquetFile(self.path)
        except Exception as error:
            raise ValueError(f"cannot read the Parquet file {self.path}: {error}") from error
        schema = parquet.schema_arrow
        tensors = [f.name for f in schema if _is_tensor_type(f.type)]
        if column is None:
            if len(tensors) != 1:
                raise ValueError(f"{self.path} has {len(tensors)} tensor columns ({', '.join(tensors) or 'none'}; "
                                 f"all columns: {', '.join(schema.names)}): name the one to explain with column= "
                                 f"(--column)")
            column = tensors[0]
        if column not in schema.names:
            raise ValueError(f"{self.path} has no column {column!r}; its columns: {', '.join(schema.names)}")
        if column not in tensors and self.shape is None:
            raise ValueError(f"column {column!r} of {self.path} has type {schema.field(column).type}, not a "
                             f"tensor (a list or fixed_shape_tensor per row); give shape= to reshape its rows")
        self.column = column
        sizes = [parquet.metadata.row_group(g).num_rows for g in range(parquet.num_row_groups)]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int).tolist()
        self.n = int(self.starts[-1])
        self.bytes = self.path.stat().st_size
        self.schema = str(schema.field(column).type)
        self._cache = None
        if self.n == 0:
            raise ValueError(f"{self.path} has no rows")
        first = self._group(next(g for g, size in enumerate(sizes) if size))
        rows = np.flatnonzero(first[1])
        if not len(rows):
            raise ValueError(f"the first row group of {self.path} has only null rows in column {column!r}")
        self.sample_shape = tuple(first[0].shape[1:])

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"] = None
        return state

    def label(self, index):
        return f"{self.path} row {index}"

    def _group(self, g):
        """Row group ``g`` as (x float32, ok); cached, so consecutive chunks inside one group read it once."""
        if self._cache is not None and self._cache[0] == g:
            return self._cache[1]
        table = _pyarrow_parquet().ParquetFile(self.path).read_row_group(g, columns=[self.column])
        array = table.column(self.column).combine_chunks()
        result = _tensor_rows(array, self.shape, f"column {self.column!r} of {self.path}", self.starts[g])
        self._cache = (g, result)
        return result

    def _read(self, start, stop):
        xs, oks = [], []
        g = int(np.searchsorted(self.starts, start, side="right")) - 1
        while start < stop:
            x, ok = self._group(g)
            a, b = start - self.starts[g], min(stop, self.starts[g + 1]) - self.starts[g]
            xs.append(x[a:b])
            oks.append(ok[a:b])
            start, g = self.starts[g] + b, g + 1
        x, ok = np.concatenate(xs), np.concatenate(oks)
        if x.shape[1:] != self.sample_shape:
            raise ValueError(f"mixed shapes in column {self.column!r} of {self.path}: rows of shape {x.shape[1:]} "
                             f"and {self.sample_shape}")
        base = stop - len(x)
        errors = [_error(base + r, self.label(base + r), "the row is null") for r in np.flatnonzero(~ok)]
        return Chunk(np.array(x, copy=True), ok.copy(), errors)

    def identity(self):
        return {"kind": self.kind, "n": self.n, "sample_shape": list(self.sample_shape), "column": self.column,
                "type": self.schema, "bytes": self.bytes, "row_groups": len(self.starts) - 1}


def _pyarrow_parquet():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError("Parquet sources need pyarrow: pip install 'signxai[dataset]' (or pip install pyarrow)") \
            from None
    return pq


def _is_tensor_type(t) -> bool:
    import pyarrow as pa

    return (isinstance(t, pa.FixedShapeTensorType) or pa.types.is_list(t) or pa.types.is_large_list(t)
            or pa.types.is_fixed_size_list(t))


def _tensor_rows(array, shape, what, first_row):
    """An Arrow array with one tensor per row → (x float32 of shape (n, ...), ok); null rows are zeros."""
    import pyarrow as pa

    n = len(array)
    ok = np.asarray(array.is_valid().to_numpy(zero_copy_only=False), bool)
    valid = array if ok.all() else array.filter(pa.array(ok))
    if isinstance(valid.type, pa.FixedShapeTensorType):
        data = valid.to_numpy_ndarray()
    else:
        dims, values = [], valid
        while pa.types.is_list(values.type) or pa.types.is_large_list(values.type) or \
                pa.types.is_fixed_size_list(values.type):
            if pa.types.is_fixed_size_list(values.type):
                length = values.type.list_size
            else:
                lengths = values.value_lengths().to_numpy(zero_copy_only=False)
                if len(lengths) and (lengths != lengths[0]).any():
                    bad = int(np.flatnonzero(lengths != lengths[0])[0])
                    row = first_row + int(np.flatnonzero(ok)[bad // max(1, int(np.prod(dims or [1])))])
                    raise ValueError(f"mixed shapes in {what}: row {row} has a list of length {lengths[bad]} where "
                                     f"the others have {lengths[0]}")
                length = int(lengths[0]) if len(lengths) else 0
            dims.append(length)
            values = values.flatten()
        if not pa.types.is_integer(values.type) and not pa.types.is_floating(values.type) and \
                not pa.types.is_boolean(values.type):
            raise ValueError(f"{what} holds values of type {values.type}; samples must be numbers")
        data = values.to_numpy(zero_copy_only=False).reshape(len(valid), *dims)
    data = np.asarray(data, dtype=np.float32)
    if shape is not None:
        if int(np.prod(shape)) != int(np.prod(data.shape[1:])):
            raise ValueError(f"shape={tuple(shape)} does not fit the rows of {what}: they hold "
                             f"{int(np.prod(data.shape[1:]))} values each")
        data = data.reshape(len(data), *shape)
    if ok.all():
        return data, ok
    x = np.zeros((n, *data.shape[1:]), np.float32)
    x[ok] = data
    return x, ok


# ------------------------------------------------------------------------------------------------- multi-input
class MultiSource(Source):
    """The inputs of a multi-input model (docs/api.md#multi-input-datasets): one source per input, in the model's
    input order, all with ``n`` rows; row ``i`` of every part is sample ``i``. A chunk's ``x`` is a list with one
    array per input; a sample is usable only where every part could read it (its errors name the input)."""

    kind = "inputs"

    def __init__(self, parts, names):
        self.parts, self.names = list(parts), list(names)
        sizes = {name: part.n for name, part in zip(self.names, self.parts)}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"the inputs of the source have different numbers of samples {sizes}: every input "
                             f"needs one row per sample")
        self.n = self.parts[0].n
        self.sample_shape = [tuple(part.sample_shape) for part in self.parts]
        for part in self.parts:
            if hasattr(part, "keep_integers"):
                part.keep_integers = True

    def integral(self) -> list:
        """The names of the inputs read as int64 (integer or boolean arrays and ``.npy`` files: indices)."""
        dtypes = [getattr(part, "array", part).dtype if hasattr(getattr(part, "array", part), "dtype") else None
                  for part in self.parts]
        return [name for name, dtype in zip(self.names, dtypes) if dtype is not None and _integral(dtype)]

    def read(self, start: int, stop: int) -> Chunk:
        chunks = [part.read(start, stop) for part in self.parts]
        ok = np.logical_and.reduce([c.ok for c in chunks])
        errors = [dict(e, path=f"{name}: {e['path']}") for name, c in zip(self.names, chunks) for e in c.errors]
        return Chunk([c.x for c in chunks], ok, sorted(errors, key=lambda e: e["index"]))

    def label(self, index):
        return f"sample {index}"

    def files(self):
        files = {name: part.files() for name, part in zip(self.names, self.parts)}
        return files if any(v is not None for v in files.values()) else None

    def identity(self):
        return {"kind": self.kind, "n": self.n, "inputs": {name: part.identity()
                                                           for name, part in zip(self.names, self.parts)}}


def open_multi_source(source, names, *, column=None, shape=None, image_size=None, caffe=False,
                      on_error="raise") -> MultiSource:
    """A :class:`MultiSource` for a list/tuple (the inputs in order) or a dict (by input name) whose entries are
    what :func:`open_source` takes for one input. ``column=`` and ``shape=`` may be given per input (a dict by name
    or a list in input order)."""
    hint = (f"give the source as a list of {len(names)} entries in this order, or a dict with these keys, each an "
            f"array (N, ...) or a .npy/Parquet file, folder or glob of that input (docs/api.md#multi-input-datasets)")
    if isinstance(source, MultiSource):
        return source
    if isinstance(source, dict):
        unknown = [k for k in source if k not in names]
        missing = [n for n in names if n not in source]
        if unknown or missing:
            raise ValueError(f"the source is a dict with keys {list(source)}, but the model's inputs are {names}"
                             + (f"; unknown: {unknown}" if unknown else "")
                             + (f"; missing: {missing}" if missing else "") + f"; {hint}")
        entries = [source[n] for n in names]
    elif isinstance(source, (list, tuple)):
        if len(source) != len(names):
            raise ValueError(f"the source is a {type(source).__name__} of {len(source)} entries, but the model takes "
                             f"{len(names)} inputs {names}; {hint}")
        entries = list(source)
    elif isinstance(source, (str, os.PathLike)) and Path(source).suffix.lower() == ".npz":
        raise ValueError(f"{source}: a .npz archive cannot be read chunk by chunk; save one .npy file per input "
                         f"(a dict name -> path), or pass dict(np.load(path)) to read it whole")
    else:
        raise ValueError(f"the model takes {len(names)} inputs {names}, but the source is one "
                         f"{type(source).__name__}; {hint}")

    def per_input(value, what):
        if isinstance(value, dict):
            unknown = [k for k in value if k not in names]
            if unknown:
                raise ValueError(f"{what}= names {unknown}, which are not inputs of the model {names}")
            return [value.get(n) for n in names]
        if isinstance(value, list) and (what == "column" or (value and not isinstance(value[0], int))):
            if len(value) != len(names):
                raise ValueError(f"{what}= is a list of {len(value)} entries, but the model takes {len(names)} "
                                 f"inputs {names}; give one per input or a dict by input name")
            return list(value)
        return [value] * len(names)

    columns, shapes = per_input(column, "column"), per_input(shape, "shape")
    parts: list[Source] = []
    for name, entry, col, shp in zip(names, entries, columns, shapes):
        if isinstance(entry, (list, tuple)) and entry and all(hasattr(e, "shape") for e in entry):
            raise ValueError(f"input {name!r} of the source is a list of arrays; give one array (N, ...) per input")
        try:
            if hasattr(entry, "detach"):
                entry = entry.detach().cpu().numpy()
            if isinstance(entry, (str, os.PathLike)) and Path(entry).suffix.lower() == ".npy" and \
                    Path(entry).is_file():
                parts.append(NpySource(entry, min_ndim=1))  # an input may hold one number per sample (N,)
            elif isinstance(entry, np.ndarray):
                parts.append(ArraySource(entry, min_ndim=1))
            else:
                parts.append(open_source(entry, None, column=col, shape=shp, image_size=image_size, caffe=caffe,
                                         on_error=on_error))
        except (ValueError, TypeError) as error:
            raise type(error)(f"input {name!r} of the source: {error}") from error
    return MultiSource(parts, names)


# ---------------------------------------------------------------------------------------------------- opening
def open_source(source, model_info=None, *, column=None, shape=None, image_size=None, caffe=False,
                on_error="raise") -> Source:
    """A :class:`Source` for an array, a ``.npy``/Parquet file, a folder, a glob or a list of files."""
    if isinstance(source, Source):
        return source
    if isinstance(source, (list, tuple)) and source and all(isinstance(p, (str, os.PathLike)) for p in source):
        return FilesSource(source, model_info, image_size=image_size, caffe=caffe, on_error=on_error)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            files = sorted((p for p in path.iterdir() if p.is_file() and
                            p.suffix.lower() in (".npy", *IMAGE_SUFFIXES)), key=lambda p: p.name)
            if not files:
                raise ValueError(f"the folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)}) or .npy files")
            return FilesSource(files, model_info, image_size=image_size, caffe=caffe, on_error=on_error)
        if path.is_file():
            suffix = path.suffix.lower()
            if suffix == ".npy":
                return NpySource(path)
            if suffix in PARQUET_SUFFIXES:
                return ParquetSource(path, column=column, shape=shape)
            if suffix in IMAGE_SUFFIXES:
                return FilesSource([path], model_info, image_size=image_size, caffe=caffe, on_error=on_error)
            raise ValueError(f"unsupported source file {path}: give a .npy or .parquet file, a folder or glob of "
                             f"images or .npy files, or a NumPy array")
        if any(c in str(source) for c in _GLOB_CHARS):
            files = sorted(Path(p) for p in glob.glob(str(source), recursive=True) if Path(p).is_file())
            if not files:
                raise ValueError(f"the glob {str(source)!r} matches no file")
            return FilesSource(files, model_info, image_size=image_size, caffe=caffe, on_error=on_error)
        raise ValueError(f"no such file or folder: {path}")
    if isinstance(source, (list, tuple)) and not source:
        raise ValueError("the source is an empty list")
    if hasattr(source, "detach"):  # a torch tensor: its CPU memory, without a copy where possible
        source = source.detach().cpu().numpy()
    if isinstance(source, np.ndarray) or hasattr(source, "__array__") or isinstance(source, (list, tuple)):
        return ArraySource(source)
    raise TypeError(f"unsupported source of type {type(source).__name__}: give a NumPy array, a .npy or .parquet "
                    f"file, a folder or glob of images or .npy files, or a list of files")
