"""Real face photos for tests: the test images of the PyPI sdist face_recognition==1.3.0.

Fetched once with pip, checked by sha256 (the tarball and each image), cached under the
data dir. Nothing is committed.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
from pathlib import Path

SDIST = "face_recognition==1.3.0"
SDIST_SHA256 = "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec"
MEMBER_DIR = "face_recognition-1.3.0/tests/test_images/"
IMAGES = {
    "32bit.png": "44dca895a7d635a4aedddd91a4f37af9a8a5b44e66154282a24645a757b5f627",
    "biden.jpg": "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c",
    "obama.jpg": "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6",
    "obama2.jpg": "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6",
    "obama3.jpg": "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3",
    "obama_partial_face.jpg": "c2d1f09e7ef3042352b41e41286e6eb0522f64f88308be13886991b95db52117",
    "obama_partial_face2.jpg": "9a812347f97633542b8cd9992de22def11b74f79d82056bc3ee830f13878e028",
}
OBAMA = ["obama.jpg", "obama2.jpg", "obama3.jpg"]
BIDEN = ["biden.jpg"]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_photos(cache: Path) -> Path:
    """Return a directory holding the checked images, downloading them if needed."""
    images = cache / "face_recognition"
    if all((images / n).is_file() for n in IMAGES):
        return images
    download = cache / "sdist"
    download.mkdir(parents=True, exist_ok=True)
    tarballs = list(download.glob("face_recognition-1.3.0.tar.gz"))
    if not tarballs:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-d",
                str(download),
                SDIST,
            ],
            check=True,
            timeout=300,
        )
        tarballs = list(download.glob("face_recognition-1.3.0.tar.gz"))
    tarball = tarballs[0]
    if _sha256(tarball.read_bytes()) != SDIST_SHA256:
        tarball.unlink()
        raise RuntimeError(f"{tarball.name} does not match the pinned sha256")
    images.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as archive:
        for name, digest in IMAGES.items():
            member = archive.extractfile(MEMBER_DIR + name)
            assert member is not None
            data = member.read()
            if _sha256(data) != digest:
                raise RuntimeError(f"{name} does not match the pinned sha256")
            (images / name).write_bytes(data)
    return images
