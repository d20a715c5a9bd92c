"""The tabular model is built at run time and runs in ONNX Runtime: 30 features in, 2 probabilities out."""

from __future__ import annotations

import numpy as np
import pytest

from gearcam.bench.subjects import Subject, load_subject, random_batch

pytest.importorskip("onnx", reason="the tabular model is built with onnx (requirements-dev.txt)")
pytest.importorskip("onnxruntime", reason="pip install onnxruntime==1.31.1")


def test_the_tabular_model_gives_two_probabilities_per_row_and_says_its_weights_are_random() -> None:
    from gearcam.runtime.ai.engines import EngineOptions, load_model

    subject = load_subject("tabular")
    assert isinstance(subject, Subject)
    assert "random weights" in subject.note
    model = load_model(subject.backend, "CPU", subject.blob, subject.inputs, subject.outputs, EngineOptions())
    x = random_batch(subject, 5)
    assert x.shape == (5, 30)
    (y,) = model.run([x])
    assert y.shape == (5, 2)
    assert np.allclose(y.sum(axis=1), 1.0, atol=1e-5)
    assert len({round(float(v), 4) for v in y[:, 0]}) > 1  # different rows, different answers


def test_an_unknown_model_name_lists_the_choices() -> None:
    with pytest.raises(Exception, match="choose one of"):
        load_subject("no-such-model")
