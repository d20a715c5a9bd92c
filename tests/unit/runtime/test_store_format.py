"""The stored tensor format: the header written without json.dumps reads back as json.dumps would write it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gearcam.runtime.ai.store import KIND_TENSOR, decode_tensor, encode_tensor, pack
from gearcam.runtime.ai.tensor import Tensor


@pytest.mark.parametrize(
    ("dtype", "shape"),
    [("FLOAT", (1, 30)), ("INT8", (2, 3, 4)), ("DOUBLE", ()), ("UINT8", (1, 224, 224, 3)), ("BOOL", (5,))],
)
def test_tensor_header_is_the_json_header(dtype: str, shape: tuple[int, ...]) -> None:
    tensor = Tensor.zeros(dtype, shape)
    head, payload = encode_tensor(tensor, "abc123")
    expected, _ = pack(KIND_TENSOR, {"dtype": dtype, "shape": list(shape), "uid": "abc123"}, payload)
    assert head == expected
    uid, back = decode_tensor(head + bytes(payload))
    assert uid == "abc123"
    assert back.dtype == dtype and back.shape == shape
    assert json.loads(head[9:])["shape"] == list(shape)


def test_stored_tensor_round_trips_its_values() -> None:
    tensor = Tensor.from_array(np.arange(12, dtype=np.float32).reshape(3, 4))
    head, payload = encode_tensor(tensor, "f00d")
    _, back = decode_tensor(head + bytes(payload))
    assert np.array_equal(back.array, tensor.array)
