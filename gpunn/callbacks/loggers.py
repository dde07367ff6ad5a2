"""Callbacks that write the epoch logs to a file: ``CSVLogger`` and
``JSONLinesLogger``."""

from __future__ import annotations

import csv
import json
import os

from gpunn import distributed
from gpunn.callbacks.base import Callback, _entries
from gpunn.checks import check_bool, check_int, check_path


class _FileLogger(Callback):
    writes_weights = False  # reads the model only

    def __init__(self, filename, append: bool = False):
        self.filename = check_path("filename", filename)
        self.append = check_bool("append", append)
        self._file = self._size = None

    def on_train_begin(self, logs=None):
        mode = "a" if self.append else "w"
        if not distributed.is_primary():  # rank 0 alone writes the file
            self._file = open(os.devnull, "w", newline="")  # noqa: SIM115
            return
        if self._resuming() and self._size is not None:
            with open(self.filename, "a") as file:  # rows after the checkpoint go
                file.truncate(min(self._size, os.fstat(file.fileno()).st_size))
            mode = "a"
        self._file = open(self.filename, mode, newline="")  # noqa: SIM115

    @property
    def state_key(self) -> str:
        return f"{type(self).__name__}({os.fspath(self.filename)})"

    def get_state(self) -> dict:
        """``{"size"}``: the file's length in bytes (None outside training). A
        resumed run cuts the file back to it, dropping the rows written after the
        checkpoint, and appends."""
        if self._file is None:
            return {"size": None}
        self._file.flush()
        return {"size": os.fstat(self._file.fileno()).st_size}

    def set_state(self, state) -> None:
        size = _entries(self, state, ("size",))["size"]
        self._size = None if size is None else check_int("size", size, 0)
        self._restored = True

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


class CSVLogger(_FileLogger):
    """Writes one row per epoch (``epoch`` and the sorted log names) to ``filename``.

    Args:
        filename: the CSV file.
        separator: field separator. Default: ``","``.
        append: add to an existing file (no second header). Default: False.
    """

    def __init__(self, filename, separator: str = ",", append: bool = False):
        super().__init__(filename, append)
        self.separator = separator
        self._writer = self._keys = None

    def on_train_begin(self, logs=None):
        keys = self._keys if self._restored else None  # a resumed run keeps columns
        super().on_train_begin(logs)
        self._writer, self._keys = None, keys
        self._header = os.fstat(self._file.fileno()).st_size == 0

    def get_state(self) -> dict:
        """``{"size", "keys"}``: the file's length (see ``JSONLinesLogger``) and
        the columns, which a resumed run keeps."""
        keys = None if self._keys is None else list(self._keys)
        return {**super().get_state(), "keys": keys}

    def set_state(self, state) -> None:
        columns = _entries(self, state, ("size", "keys"))["keys"]
        names = isinstance(columns, list) and all(isinstance(k, str) for k in columns)
        if columns is not None and not names:
            raise ValueError(f"CSVLogger state 'keys' must be names, got {columns!r}")
        super().set_state({"size": state["size"]})
        self._keys = None if columns is None else list(columns)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._writer is None:
            self._keys = sorted(logs) if self._keys is None else self._keys
            fields = ["epoch", *self._keys]
            self._writer = csv.DictWriter(
                self._file, fields, delimiter=self.separator, extrasaction="ignore"
            )
            if self._header:
                self._writer.writeheader()
        self._writer.writerow(
            {"epoch": epoch, **{k: logs.get(k, "") for k in self._keys}}
        )
        self._file.flush()


class JSONLinesLogger(_FileLogger):
    """Writes one JSON object per epoch, ``{"epoch": 0, "loss": ..., ...}``, per line
    to ``filename`` (JSON Lines); ``append`` adds to an existing file. Resumed from a
    checkpoint, it cuts the file back to its length then and appends."""

    def on_epoch_end(self, epoch, logs=None):
        record = {"epoch": epoch, **(logs or {})}
        self._file.write(json.dumps(record, allow_nan=True) + "\n")
        self._file.flush()
