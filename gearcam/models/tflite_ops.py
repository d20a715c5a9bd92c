"""What a TFLite flatbuffer asks of the runtime that loads it: builtin ops and their versions.

An older TFLite runtime (RedisAI 1.2.7 on x64 and 1.2.4 on the Jetson both link TFLite
2.0.0) refuses a model whose op versions it does not know ("Didn't find op for
builtin opcode 'CONV_2D' version '5'"). The versions are read straight out of the
flatbuffer with the schema that ``ai-edge-litert`` ships, and mapped to the first
TFLite release that knows them (the table of TensorFlow's
``tensorflow/lite/tools/versioning/runtime_version.cc``, for the ops a CNN uses).
"""

from __future__ import annotations

from dataclasses import dataclass

from gearcam.errors import EngineMissing
from gearcam.models.manifest import ModelFileError

__all__ = ["TARGET_RUNTIME", "TfliteRequirements", "min_runtime", "read_requirements", "version_key"]

# The TFLite that RedisAI 1.2.7's and 1.2.4's get_deps build against (shared/reference/redisai-1.2.md §0).
TARGET_RUNTIME = "2.0.0"

# Op -> first runtime knowing version 1, 2, ... (index = version - 1).
_MIN_RUNTIME: dict[str, tuple[str, ...]] = {
    "ADD": ("1.5.0", "1.14.0", "2.4.0", "2.6.0"),
    "AVERAGE_POOL_2D": ("1.5.0", "1.14.0", "2.3.0"),
    "CONCATENATION": ("1.5.0", "1.14.0", "2.3.0"),
    "CONV_2D": ("1.5.0", "1.14.0", "1.14.0", "2.3.0", "2.4.0", "2.9.0"),
    "DEPTHWISE_CONV_2D": ("1.5.0", "1.12.0", "1.14.0", "2.2.0", "2.3.0", "2.3.0"),
    "DEQUANTIZE": ("1.13.1", "1.14.0", "1.15.0", "2.2.0", "2.7.0"),
    "FULLY_CONNECTED": ("1.5.0", "1.10.0", "1.14.0", "1.14.0", "2.0.0", "2.1.0", "2.3.0", "2.3.0", "2.3.0"),
    "MEAN": ("1.6.0", "1.14.0", "2.4.0"),
    "MUL": ("1.5.0", "1.14.0", "1.15.0", "2.3.0", "2.6.0"),
    "PAD": ("1.5.0", "1.14.0", "2.4.0", "2.6.0"),
    "QUANTIZE": ("1.14.0", "1.15.0", "2.7.0"),
    "RELU6": ("1.5.0", "1.14.0", "2.5.0"),
    "RESHAPE": ("1.5.0",),
    "SOFTMAX": ("1.5.0", "1.14.0", "2.3.0"),
    "SUB": ("1.6.0", "1.14.0", "2.3.0", "2.4.0", "2.4.0"),
    "TRANSPOSE": ("1.6.0", "1.14.0", "1.15.0", "2.3.0", "2.4.0"),
}


def version_key(version: str) -> tuple[int, ...]:
    """'2.10.0' -> (2, 10, 0), so versions compare as numbers."""
    return tuple(int(part) for part in version.split(".") if part.isdigit())


@dataclass(frozen=True)
class TfliteRequirements:
    ops: dict[str, int]  # builtin op name -> highest version the file uses
    min_runtime: str  # the first TFLite release knowing all of them ("unknown" if an op is not in the table)
    converter_min_runtime: str  # what the converter wrote into the file's "min_runtime_version" metadata


def min_runtime(ops: dict[str, int]) -> str:
    """The first TFLite runtime that knows every (op, version); 'unknown' if the table lacks one."""
    best = "1.5.0"
    for op, version in ops.items():
        known = _MIN_RUNTIME.get(op, ())
        if version > len(known):
            return "unknown"
        if version_key(known[version - 1]) > version_key(best):
            best = known[version - 1]
    return best


def read_requirements(blob: bytes, where: str = "TFLite model") -> TfliteRequirements:
    """The op versions and runtime a TFLite flatbuffer needs, read from the file itself."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError as exc:
        raise EngineMissing("TFLITE", "ai-edge-litert==2.3.0") from exc
    if len(blob) < 8 or blob[4:8] != b"TFL3":
        raise ModelFileError(f"{where} is not a TFLite flatbuffer (no 'TFL3' identifier); rebuild it")
    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    try:
        model = schema.Model.GetRootAs(blob, 0)
        ops: dict[str, int] = {}
        for index in range(model.OperatorCodesLength()):
            code = model.OperatorCodes(index)
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            name = names.get(builtin, f"BUILTIN_{builtin}")
            if code.CustomCode():
                name = "CUSTOM:" + code.CustomCode().decode()
            ops[name] = max(ops.get(name, 0), code.Version())
        converter = ""
        for index in range(model.MetadataLength()):
            entry = model.Metadata(index)
            if entry.Name() == b"min_runtime_version":
                raw = bytes(model.Buffers(entry.Buffer()).DataAsNumpy())
                converter = raw.split(b"\0", 1)[0].decode()
    except Exception as exc:  # a damaged flatbuffer fails anywhere inside the generated accessors
        raise ModelFileError(f"{where} is a damaged TFLite flatbuffer ({exc}); rebuild it") from exc
    return TfliteRequirements(dict(sorted(ops.items())), min_runtime(ops), converter)
