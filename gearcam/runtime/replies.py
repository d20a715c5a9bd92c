"""The error replies of RedisAI 1.2.7, word for word (../shared/reference/redisai-1.2.md).

Clients and RedisAI's own test-suite match on these strings, so they live in one
table instead of being retyped by each handler. A few carry no ``ERR`` prefix
because RedisAI sends them that way.
"""

from __future__ import annotations

WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"


def arity(command: str) -> str:
    return f"ERR wrong number of arguments for '{command}' command"


# Tensors
INVALID_DTYPE = "ERR invalid data type"
INVALID_SHAPE = "ERR invalid or negative value found in tensor shape"
BLOB_SINGLE = "ERR a single binary string should come after the BLOB argument in 'AI.TENSORSET' command"
VALUES_COUNT = "ERR wrong number of values was given in 'AI.TENSORSET' command"
BLOB_LENGTH = "ERR data length does not match tensor shape and type"
INVALID_VALUE = "ERR invalid value"
BOOL_ELEMENTS = "ERR BOOL tensor elements must be 0 or 1"
STRING_NUL = "ERR C-string value contains null character"
STRING_BLOB_COUNT = "ERR Number of string elements in data blob does not match tensor length"
TENSOR_EMPTY = "ERR tensor key is empty or in a different shard"
UNSUPPORTED_FORMAT = "ERR unsupported data format"
BOTH_FORMATS = "ERR both BLOB and VALUES specified"

# Models
UNSUPPORTED_BACKEND = "ERR unsupported backend"
INVALID_DEVICE = "ERR Invalid DEVICE"
MINBATCH_WITHOUT_BATCH = "ERR MINBATCHSIZE specified without BATCHSIZE"
MINTIMEOUT_WITHOUT_MINBATCH = "ERR MINBATCHTIMEOUT specified without MINBATCHSIZE"
MISSING_BLOB = "ERR Insufficient arguments, missing model BLOB"
TF_NO_INPUTS = "ERR INPUTS not specified for TF"
TF_NO_OUTPUTS = "ERR OUTPUTS not specified for TF"
INPUT_COUNT_ARG = "ERR Invalid argument for input_count"
OUTPUT_COUNT_ARG = "ERR Invalid argument for output_count"
TF_INPUT_NAMES = "ERR number of model inputs does not match the number of given arguments"
TF_OUTPUT_NAMES = "ERR number of model outputs does not match the number of given arguments"
INPUTS_NOT_ALLOWED = "ERR INPUTS argument should not be specified for this backend"
EXPECTED_BLOB = "ERR Invalid argument, expected BLOB"
MODEL_EMPTY = "ERR model key is empty"
COULD_NOT_LOAD_BACKEND = "ERR Could not load backend"
MODELSET_TF_NO_LISTS = "ERR Insufficient arguments, INPUTS and OUTPUTS not specified"
MODELSET_TF_NO_INPUTS = "ERR INPUTS not specified"
MODELSET_TF_NO_OUTPUTS = "ERR OUTPUTS not specified"


def corrupt_value(key: bytes, kind: str, reason: str) -> str:
    """Not RedisAI's: a key with the runtime's marker whose header or payload cannot be read."""
    name = key.decode("utf-8", "replace")
    return f"ERR key '{name}' holds a corrupt {kind} value ({reason}); delete it (DEL {name}) and store the {kind} anew"


def minbatch_over_batch(minbatchsize: int, batchsize: int) -> str:
    """Not RedisAI's (it accepts it, and every run then waits forever)."""
    return (
        f"ERR MINBATCHSIZE {minbatchsize} is larger than BATCHSIZE {batchsize}: a batch could never reach it; "
        "use a MINBATCHSIZE of at most BATCHSIZE"
    )


def invalid_batch_arg(option: str) -> str:
    return f"ERR Invalid argument for {option}"


def gpu_missing(backend: str) -> str:
    return f"ERR GPU requested but {backend} couldn't find CUDA"


# Execution
IN_TRANSACTION = "ERR Cannot run RedisAI command within a transaction or a LUA script"
INPUTS_NOT_SPECIFIED = "ERR INPUTS not specified"
OUTPUTS_NOT_SPECIFIED = "ERR OUTPUTS not specified"
INPUT_COUNT_POSITIVE = "ERR Input count must be a positive integer"
OUTPUT_COUNT_POSITIVE = "ERR Output count must be a positive integer"
INPUTS_MISMATCH = "Number of keys given as INPUTS here does not match model definition"
OUTPUTS_MISMATCH = "Number of keys given as OUTPUTS here does not match model definition"
NO_TIMEOUT_VALUE = "ERR No value provided for TIMEOUT"
INVALID_TIMEOUT = "ERR Invalid value for TIMEOUT"
BATCH_SIZE_MISMATCH = "ERR Model did not generate the expected batch size"
TF_BATCH_SIZE_MISMATCH = "ERR Tensorflow batching error: model did not generate the expected batch size"
TORCH_OUTPUT_COUNT = "Function returned unexpected number of outputs - forward"
ONNX_TERMINATED = "Exiting due to terminate flag being set to true."


def keys_mismatch(direction: str, command: str) -> str:
    return f"ERR number of {direction} keys to {command} command does not match the number of given arguments"


def invalid_argument(token: str) -> str:
    return f"Invalid argument: {token}"


# Scripts
SCRIPT_EMPTY = "ERR script key is empty"
SCRIPT_NO_ENTRY_POINTS = "ERR Insufficient arguments, missing script entry points"
SCRIPT_ENTRY_POINTS_NUMBER = "ERR Non numeric entry points number provided to AI.SCRIPTSTORE command"
SCRIPT_NO_SOURCE = "ERR Insufficient arguments, missing script SOURCE"
SCRIPT_SCOPE_FIRST = "ERR KEYS or INPUTS scope must be provided first for AI.SCRIPTEXECUTE command"


def script_no_function(name: str) -> str:
    return f"Function {name} does not exist in the given script."


def script_entry_point_arity(name: str, count: int) -> str:
    """AI.SCRIPTSTORE: an entry point must take (tensors, keys, args)."""
    return f"Wrong number of inputs in function {name}. Expected 3 but was {count}"


def script_entry_point_types(name: str) -> str:
    return (
        f"Wrong inputs type in function {name}. Expected signature similar to: "
        f"def {name}(tensors: List[Tensor], keys: List[str], args: List[str])"
    )


def script_function_missing(name: str) -> str:
    """At run time (AI.SCRIPTEXECUTE, DAGs, Gears), from RedisAI's torch backend."""
    return f"Function does not exist: {name}"


# DAG
DAG_NEEDS_SCOPE = (
    "ERR AI.DAGEXECUTE and AI.DAGEXECUTE_RO commands must contain at least one out of ROUTING, LOAD, PERSIST keywords"
)
DAG_RO_PERSIST = "ERR PERSIST cannot be specified in a read-only DAG"
DAG_RO_SCRIPT = "ERR AI.SCRIPTEXECUTE command cannot be specified in a read-only DAG"
DAG_PERSIST_UNIQUE = "ERR PERSIST keys must be unique"
DAG_MISSING_ROUTING = "ERR Missing ROUTING value"
DAG_UNSUPPORTED = "Unsupported command within DAG"
DAG_EMPTY = "ERR DAG is empty"
DAG_TIMEOUT_INSIDE = "ERR TIMEOUT not allowed within a DAG command"
DAG_MODELRUN = "Deprecated AI.MODELRUN cannot be used in AI.DAGEXECUTE command"
DAG_SCRIPTRUN = "Deprecated AI.SCRIPTRUN cannot be used in AI.DAGEXECUTE command"


def dag_new_command_in_deprecated(name: str) -> str:
    return f"{name} cannot be used in a deprecated AI.DAGRUN command"


def dag_missing_after(keyword: str) -> str:
    return f"ERR missing arguments after {keyword} keyword in DAG command"


def dag_bad_count(keyword: str) -> str:
    return f"ERR invalid or negative value found in number of keys to {keyword}"


def dag_count_mismatch(keyword: str) -> str:
    where = "into DAG" if keyword == "LOAD" else "after DAG execution"
    return f"ERR number of keys to {keyword} {where} does not match the number of given arguments"


def dag_unexpected(token: str) -> str:
    return f"ERR Invalid DAG command. Unexpected argument:  {token}"  # two spaces, as RedisAI writes it


def dag_missing_arguments(command: str) -> str:
    return f"ERR missing arguments for '{command}' command"


# AI.INFO and AI.CONFIG
NO_RUN_INFO = "ERR cannot find run info for key"
UNSUPPORTED_SUBCOMMAND = "ERR unsupported subcommand"
BACKENDSPATH_MISSING = "ERR BACKENDSPATH: missing path argument"
CHUNK_SIZE_INVALID = "ERR MODEL_CHUNK_SIZE: invalid chunk size"
CHUNK_SIZE_MISSING = "ERR MODEL_CHUNK_SIZE: missing chunk size"
ERROR_LOADING_BACKEND = "ERR error loading backend"
