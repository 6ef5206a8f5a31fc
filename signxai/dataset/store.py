"""Output stores, written chunk by chunk and resumable.

Zarr (default): one group with ``maps/<method>`` (a multi-input job: ``maps/<method>/<input>`` per explained
input, docs/api.md#multi-input-datasets), ``logits``, ``predictions``, ``targets`` and ``valid``, chunked
along the samples axis with one job chunk per Zarr chunk, and a ``chunks`` log array (one JSON string per job
chunk, chunked by 1). Zarr's local store writes every chunk file to a temporary file and renames it into place, so
a chunk file is either absent or complete. A job chunk counts as finished only once its log entry exists, and the log
entry is written after all of the chunk's arrays: a crash mid-chunk leaves a readable store whose unfinished chunks
read as the fill values (NaN maps, -1 classes, ``valid == False``) and are recomputed — to the same bytes — by the
next run. The whole store is created in a temporary folder and renamed into place, so it never exists half-created.

``.npy`` (``format="npy"``): a folder with ``maps/<method>.npy``, ``logits.npy``, ``predictions.npy``,
``targets.npy``, ``valid.npy`` (created at full size, never loaded whole), ``signxai.json`` (the attributes) and
``_chunks/<k>.json`` (the log). A chunk's rows are written in place with positional writes, then its log entry is
written to a temporary file and renamed; a crash mid-chunk can leave some of an unfinished chunk's rows written, but
without a log entry that chunk is recomputed, and ``valid`` stays False until it is. Rows of chunks never written
read as zeros (and ``valid == False``).
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

ATTRS_KEY = "signxai"
_NPY_META = "signxai.json"


def zarr_module():
    try:
        import zarr
    except ImportError:
        raise ImportError("the Zarr output needs zarr: pip install 'signxai[dataset]' (or pip install zarr), or "
                          "write .npy files with format='npy' (--format npy)") from None
    return zarr


def _compressors():
    """zstd level 1: twice as fast as Zarr's default level on relevance maps, for the same size."""
    from zarr.codecs import ZstdCodec

    return [ZstdCodec(level=1)]


def detect_format(path: Path):
    """"zarr", "npy", None (nothing there or an empty folder) or "foreign" (something else)."""
    if not path.exists():
        return None
    if path.is_dir():
        if (path / _NPY_META).is_file():
            return "npy"
        if (path / "zarr.json").is_file() or (path / ".zgroup").is_file():
            return "zarr"
        if not any(path.iterdir()):
            return None
    return "foreign"


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _install(tmp: Path, path: Path) -> None:
    """Rename a freshly written store into place (onto nothing or an empty folder)."""
    try:
        os.replace(tmp, path)
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OSError(f"cannot create the store {path}: {error}") from error


def _created_tmp(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.creating")


# --------------------------------------------------------------------------------------------------------- zarr
class ZarrStore:
    format = "zarr"

    def __init__(self, path: Path):
        self.path = Path(path)
        self._arrays = {}

    @classmethod
    def create(cls, path: Path, layout: dict, attrs: dict, batch_size: int, n_chunks: int):
        zarr = zarr_module()
        tmp = _created_tmp(path)
        try:
            group = zarr.open_group(str(tmp), mode="w-")
            for name, (shape, dtype, fill, array_attrs) in layout.items():
                chunks = (min(batch_size, shape[0]), *shape[1:])
                array = group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill,
                                           compressors=_compressors())
                array.attrs.update(array_attrs)
            group.create_array("chunks", shape=(n_chunks,), chunks=(1,), dtype=str, fill_value="")
            group.attrs.update({ATTRS_KEY: attrs, "complete": False})
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _install(tmp, path)
        return cls(path)

    def attrs(self) -> dict:
        zarr = zarr_module()
        return dict(zarr.open_group(str(self.path), mode="r").attrs)

    def _array(self, name):
        if name not in self._arrays:
            self._arrays[name] = zarr_module().open_array(str(self.path / name), mode="r+")
        return self._arrays[name]

    def done(self) -> dict:
        """Finished chunks: index → log entry."""
        log = zarr_module().open_array(str(self.path / "chunks"), mode="r")[:]
        return {k: json.loads(entry) for k, entry in enumerate(log.tolist()) if entry}

    def clean(self) -> None:
        """Remove temporary files a killed writer left behind (Zarr's ``*.partial``); only when no job writes."""
        for root, _, files in os.walk(self.path):
            for name in files:
                if name.endswith(".partial"):
                    os.unlink(os.path.join(root, name))

    def write_chunk(self, k: int, start: int, arrays: dict, log: dict) -> None:
        """Every array's rows of chunk ``k``, then its log entry (which marks it finished)."""
        for name, value in arrays.items():
            self._write_array(name, start, value)
        self._write_log(k, log)

    def _write_array(self, name, start, value):
        self._array(name)[start:start + len(value)] = value

    def _write_log(self, k, log):
        self._array("chunks")[k] = json.dumps(log, sort_keys=True)

    def finish(self, extra: dict) -> None:
        zarr = zarr_module()
        zarr.open_group(str(self.path), mode="r+").attrs.update(extra)

    def arrays(self) -> dict:
        zarr = zarr_module()
        group = zarr.open_group(str(self.path), mode="r")
        maps = group["maps"]
        found = {name: maps[name] for name in maps.array_keys()}
        found.update({method: {name: maps[method][name] for name in sorted(maps[method].array_keys())}
                      for method in maps.group_keys()})  # a multi-input store: maps/<method>/<input>
        return {"maps": dict(sorted(found.items())),
                **{name: group[name] for name in ("logits", "predictions", "targets", "valid")}}


# ---------------------------------------------------------------------------------------------------------- npy
class NpyStore:
    format = "npy"

    def __init__(self, path: Path):
        self.path = Path(path)
        self._offsets = {}

    @staticmethod
    def _file(root: Path, name: str) -> Path:
        return root / f"{name}.npy"

    @classmethod
    def create(cls, path: Path, layout: dict, attrs: dict, batch_size: int, n_chunks: int):
        tmp = _created_tmp(path)
        try:
            (tmp / "maps").mkdir(parents=True)
            (tmp / "_chunks").mkdir()
            for name, (shape, dtype, _fill, _attrs) in layout.items():
                cls._file(tmp, name).parent.mkdir(parents=True, exist_ok=True)  # maps/<method>/ per input
                array = np.lib.format.open_memmap(cls._file(tmp, name), mode="w+", dtype=dtype, shape=shape)
                del array  # a sparse file of zeros: nothing is loaded or written in full
            meta = {ATTRS_KEY: attrs, "complete": False,
                    "arrays": {name: entry[3] for name, entry in layout.items()}}
            _atomic_write_text(tmp / _NPY_META, json.dumps(meta, indent=1))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _install(tmp, path)
        return cls(path)

    def attrs(self) -> dict:
        return json.loads((self.path / _NPY_META).read_text())

    def done(self) -> dict:
        done = {}
        for entry in (self.path / "_chunks").iterdir():
            if entry.suffix == ".json" and entry.stem.isdigit():
                done[int(entry.stem)] = json.loads(entry.read_text())
        return done

    def clean(self) -> None:
        for entry in (self.path / "_chunks").iterdir():
            if entry.name.endswith(".tmp"):
                entry.unlink()

    def _offset(self, name):
        if name not in self._offsets:
            mapped = np.load(self._file(self.path, name), mmap_mode="r")
            self._offsets[name] = (mapped.offset, mapped.dtype, int(np.prod(mapped.shape[1:])))
            del mapped
        return self._offsets[name]

    def write_chunk(self, k: int, start: int, arrays: dict, log: dict) -> None:
        """Every array's rows of chunk ``k`` (``valid`` last), then its log entry (which marks it finished)."""
        for name, value in arrays.items():
            self._write_array(name, start, value)
        self._write_log(k, log)

    def _write_array(self, name, start, value):
        offset, dtype, row = self._offset(name)
        data = np.ascontiguousarray(value, dtype=dtype).tobytes()
        fd = os.open(self._file(self.path, name), os.O_WRONLY)
        try:
            position, view = offset + start * row * dtype.itemsize, memoryview(data)
            while view:
                written = os.pwrite(fd, view, position)
                view, position = view[written:], position + written
        finally:
            os.close(fd)

    def _write_log(self, k, log):
        _atomic_write_text(self.path / "_chunks" / f"{k:08d}.json", json.dumps(log, sort_keys=True))

    def finish(self, extra: dict) -> None:
        meta = self.attrs()
        meta.update(extra)
        _atomic_write_text(self.path / _NPY_META, json.dumps(meta, indent=1))

    def arrays(self) -> dict:
        root = self.path / "maps"
        found = {p.stem: np.load(p, mmap_mode="r") for p in root.glob("*.npy")}
        found.update({d.name: {p.stem: np.load(p, mmap_mode="r") for p in sorted(d.glob("*.npy"))}
                      for d in root.iterdir() if d.is_dir()})  # a multi-input store: maps/<method>/<input>.npy
        return {"maps": dict(sorted(found.items())),
                **{name: np.load(self._file(self.path, name), mmap_mode="r")
                   for name in ("logits", "predictions", "targets", "valid")}}


STORES = {"zarr": ZarrStore, "npy": NpyStore}


def attach_store(path, format: str):
    """An existing store, opened for writing chunks (as engines' workers do)."""
    return STORES[format](Path(path))


def open_existing(path) -> ZarrStore | NpyStore:
    """A store written by explain_dataset, for reading; ValueError if ``path`` is none."""
    path = Path(path)
    kind = detect_format(path)
    if kind not in STORES:
        raise ValueError(f"{path} is not a store written by signxai.explain_dataset")
    store = STORES[kind](path)
    if ATTRS_KEY not in store.attrs():
        raise ValueError(f"{path} is a {kind} store, but not one written by signxai.explain_dataset")
    return store
