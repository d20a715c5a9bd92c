"""The classifier's artifacts: manifest, verification, preprocessing, export and upload.

Light on purpose: importing this package needs neither PyTorch nor TensorFlow. The
export (``gearcam.models.export``) imports them on first use, and the engines for the
checks are imported when a check runs.
"""

from __future__ import annotations

from gearcam.models.manifest import (
    BACKENDS,
    MANIFEST_PATH,
    MODELS_DIR,
    Artifact,
    Manifest,
    ModelFileError,
    check_backend,
    load_manifest,
    read_labels,
    verify_artifact,
)
from gearcam.models.preprocess import preprocess, preprocess_image

__all__ = [
    "BACKENDS",
    "MANIFEST_PATH",
    "MODELS_DIR",
    "Artifact",
    "Manifest",
    "ModelFileError",
    "check_backend",
    "load_manifest",
    "preprocess",
    "preprocess_image",
    "read_labels",
    "verify_artifact",
]
