"""Just enough of protobuf's wire format to read a few fields of a message without its schema.

Two checks read serialized models this way: the TF GraphDef check (`gearcam.models.graphdef`),
which must run where TensorFlow is not installed, and the runtime's refusal of ONNX models that
point at files (`gearcam.runtime.ai.engines.onnx_external`), which must look before ONNX Runtime
does. Given a memoryview, the length-delimited values are memoryviews too, so walking a model of
hundreds of MB copies none of its weights.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["Buffer", "fields", "varint"]

Buffer = bytes | memoryview


def varint(data: Buffer, pos: int) -> tuple[int, int]:
    """The varint at `pos`, and the position after it."""
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def fields(data: Buffer) -> Iterator[tuple[int, int | Buffer]]:
    """(field number, value) for each field: an int for varints, a slice of `data` for everything else."""
    pos = 0
    while pos < len(data):
        key, pos = varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == 0:
            value, pos = varint(data, pos)
            yield number, value
        elif wire == 2:
            size, pos = varint(data, pos)
            if pos + size > len(data):
                raise ValueError("truncated length-delimited field")
            yield number, data[pos : pos + size]
            pos += size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > len(data):
                raise ValueError("truncated fixed-size field")
            yield number, data[pos : pos + size]
            pos += size
        else:
            raise ValueError(f"unsupported wire type {wire}")
