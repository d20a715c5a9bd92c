"""RedisAI tensors: data types, BLOB/VALUES conversion and the reply shapes of AI.TENSORGET.

RedisAI 1.2 knows FLOAT, DOUBLE, INT8/16/32/64, UINT8/16, BOOL and STRING; data is
row-major little-endian. Tensors are held as numpy arrays (STRING as an object array
of bytes) so every engine can take them without a copy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gearcam.runtime import replies
from gearcam.runtime.ai.errors import AIError
from gearcam.runtime.resp import Double

__all__ = ["DTYPES", "MAX_DIMS", "MAX_TENSOR_BYTES", "Tensor", "check_shape", "dtype_name"]

MAX_DIMS = 64  # numpy's limit (RedisAI has none)
# A tensor is stored as one Redis string, which holds at most proto-max-bulk-len (512 MB by default).
MAX_TENSOR_BYTES = 512 * 1024 * 1024

DTYPES: dict[str, np.dtype[Any]] = {
    "FLOAT": np.dtype("<f4"),
    "DOUBLE": np.dtype("<f8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "BOOL": np.dtype("?"),
    "STRING": np.dtype(object),
}
_BY_KIND = {(dt.kind, dt.itemsize): name for name, dt in DTYPES.items() if name != "STRING"}


def check_shape(dtype: str, shape: Sequence[int]) -> int:
    """The element count of a tensor of this shape; an error reply if the runtime cannot hold one.

    Counted exactly (a C product of 4294967296 x 4294967296 wraps to 0), before anything is allocated.
    """
    if len(shape) > MAX_DIMS:
        raise AIError(f"ERR tensor has {len(shape)} dimensions; the gearcam runtime supports at most {MAX_DIMS}")
    count = math.prod(shape)
    size = count * (1 if dtype == "STRING" else DTYPES[dtype].itemsize)
    if size > MAX_TENSOR_BYTES:
        raise AIError(
            f"ERR tensor of shape {list(shape)} and type {dtype} takes {size} bytes, more than the {MAX_TENSOR_BYTES} "
            "a Redis string holds (proto-max-bulk-len); use a smaller shape"
        )
    return count


def dtype_name(dtype: np.dtype[Any]) -> str:
    """The RedisAI type name of a numpy dtype, or an error naming the unsupported type."""
    if dtype.kind in ("O", "S", "U"):
        return "STRING"
    name = _BY_KIND.get((dtype.kind, dtype.itemsize))
    if name is None:
        raise AIError(f"ERR unsupported tensor data type {dtype} produced by the model")
    return name


def _parse_int(text: bytes, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise AIError(replies.INVALID_VALUE) from None
    if not low <= value <= high:
        raise AIError(replies.INVALID_VALUE)
    return value


def _parse_float(text: bytes) -> float:
    try:
        return float(text)
    except ValueError:
        raise AIError(replies.INVALID_VALUE) from None


@dataclass(frozen=True)
class Tensor:
    dtype: str
    array: np.ndarray[Any, Any]
    # The bytes the tensor was made from, kept so BLOB replies and storage need no copy.
    raw: bytes | memoryview | None = field(default=None, compare=False, repr=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.array.shape)

    @classmethod
    def from_array(cls, array: np.ndarray[Any, Any]) -> Tensor:
        name = dtype_name(array.dtype)
        if name == "STRING" and (array.dtype != DTYPES["STRING"] or not all(isinstance(x, bytes) for x in array.flat)):
            # Engines hand strings back as str (ONNX Runtime) or fixed-width bytes: RedisAI holds C strings.
            items = [x.encode() if isinstance(x, str) else bytes(x) for x in array.flat]
            array = np.array(items, dtype=object).reshape(array.shape)
        # reshape: ascontiguousarray makes a 0-dim array (a TorchScript scalar) 1-dim; RedisAI keeps shape [].
        return cls(name, np.ascontiguousarray(array, dtype=DTYPES[name]).reshape(array.shape))

    @classmethod
    def zeros(cls, dtype: str, shape: Sequence[int]) -> Tensor:
        if dtype == "STRING":
            return cls(dtype, np.full(tuple(shape), b"", dtype=object))
        return cls(dtype, np.zeros(tuple(shape), dtype=DTYPES[dtype]))

    @classmethod
    def from_blob(cls, dtype: str, shape: Sequence[int], blob: bytes | memoryview) -> Tensor:
        count = check_shape(dtype, shape)
        if dtype == "STRING":
            data = bytes(blob)
            if not data.endswith(b"\0") or data.count(b"\0") != count:
                raise AIError(replies.STRING_BLOB_COUNT)
            items = data[:-1].split(b"\0")
            return cls(dtype, np.array(items, dtype=object).reshape(tuple(shape)))
        dt = DTYPES[dtype]
        if memoryview(blob).nbytes != count * dt.itemsize:
            raise AIError(replies.BLOB_LENGTH)
        if dtype == "BOOL" and blob and int(np.frombuffer(blob, dtype=np.uint8).max()) > 1:
            raise AIError(replies.BOOL_ELEMENTS)
        return cls(dtype, np.frombuffer(blob, dtype=dt).reshape(tuple(shape)), raw=blob)

    @classmethod
    def from_values(cls, dtype: str, shape: Sequence[int], values: Sequence[bytes]) -> Tensor:
        if dtype == "STRING":
            # RedisAI allows one trailing NUL (a C string as sent), none before it.
            items = [bytes(v[:-1]) if v.endswith(b"\0") else bytes(v) for v in values]
            if any(b"\0" in v for v in items):
                raise AIError(replies.STRING_NUL)
            return cls(dtype, np.array(items, dtype=object).reshape(tuple(shape)))
        dt = DTYPES[dtype]
        parsed: list[Any]
        if dt.kind == "f":
            parsed = [_parse_float(v) for v in values]
        elif dtype == "BOOL":
            parsed = [_parse_int(v, 0, 1) for v in values]
        else:
            info = np.iinfo(dt)
            parsed = [_parse_int(v, int(info.min), int(info.max)) for v in values]
        return cls(dtype, np.array(parsed, dtype=dt).reshape(tuple(shape)))

    def blob(self) -> bytes | memoryview:
        if self.raw is not None:
            return self.raw
        if self.dtype == "STRING":
            return b"".join(bytes(x) + b"\0" for x in self.array.flat)
        return memoryview(np.ascontiguousarray(self.array).data).cast("B")

    def values(self) -> list[Any]:
        """Elements as RedisAI replies them: doubles for floats, integers otherwise."""
        if self.dtype == "STRING":
            return [bytes(x) for x in self.array.flat]
        if self.array.dtype.kind == "f":
            return [Double(float(x)) for x in self.array.flat]
        return [int(x) for x in self.array.flat]

    def reply(self, meta: bool, fmt: str | None) -> Any:
        """The AI.TENSORGET reply for the given META flag and BLOB/VALUES format."""
        if not meta:
            return self.blob() if fmt == "BLOB" else self.values()
        head: list[Any] = ["dtype", self.dtype, "shape", list(self.shape)]
        if fmt == "BLOB":
            return [*head, "blob", self.blob()]
        if fmt == "VALUES":
            return [*head, "values", self.values()]
        return head
