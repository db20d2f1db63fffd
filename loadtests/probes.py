"""The photos that load traffic sends, each labelled with the person it must be recognised as.

Real photos from the face_recognition==1.3.0 sdist (fetched and checked by ``tests.support.photos``)
plus augmentations (EXIF rotation, down-scaling, heavy re-encoding) so that the probes are
not byte-identical to what the gallery was enrolled from. Only faces that the calibration
test separates are used, so a wrong or missing name is a service failure, never bad luck.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import augment
from tests.support.photos import fetch_photos

OBAMA, BIDEN = "Barack Obama", "Joe Biden"


@dataclass(frozen=True)
class Person:
    name: str
    external_id: str
    enrol_from: tuple[str, ...]
    """Photo file names enrolled for this person by the gallery set-up."""


GALLERY: tuple[Person, ...] = (
    Person(OBAMA, "load-potus-44", ("obama.jpg",)),
    Person(BIDEN, "load-potus-46", ("biden.jpg",)),
)


@dataclass(frozen=True)
class Probe:
    label: str
    """Short name for logs (photo + augmentation)."""
    data: bytes
    expected: str
    """Name of the person the largest face must be recognised as."""


def photos_dir() -> Path:
    """The checked photos: ``$FACEREC_LOAD_PHOTOS`` or the test cache under the data dir."""
    explicit = os.environ.get("FACEREC_LOAD_PHOTOS")
    if explicit:
        return Path(explicit)
    data_dir = Path(os.environ.get("FACEREC_DATA_DIR", Path(__file__).resolve().parent.parent / "var"))
    return fetch_photos(data_dir / "testdata")


def _variants(name: str, data: bytes) -> list[tuple[str, bytes]]:
    return [
        (name, data),
        (f"{name}@scale0.5", augment.scaled(data, 0.5)),
        (f"{name}@q30", augment.reencoded(data, 30)),
        (f"{name}@exif90", augment.rotated_by_exif(data)),
    ]


def recognition_probes(photos: Path) -> list[Probe]:
    """Probes for /v1/recognize; the enrolled photos appear only as augmentations."""
    sources = {
        OBAMA: ["obama2.jpg", "obama3.jpg", "obama_partial_face.jpg", "obama.jpg"],
        BIDEN: ["biden.jpg"],
    }
    enrolled = {n for person in GALLERY for n in person.enrol_from}
    probes = []
    for expected, names in sources.items():
        for name in names:
            for label, data in _variants(name, (photos / name).read_bytes()):
                if label in enrolled:  # the exact enrolled bytes would test nothing
                    continue
                probes.append(Probe(label, data, expected))
    return probes


def enrolment_probes(photos: Path) -> list[Probe]:
    """Faces enrolled under load onto the right person (so recognition answers stay correct)."""
    return [
        Probe(label, data, OBAMA)
        for label, data in _variants("obama2.jpg", (photos / "obama2.jpg").read_bytes())[1:]
    ] + [
        Probe(label, data, BIDEN)
        for label, data in _variants("biden.jpg", (photos / "biden.jpg").read_bytes())[1:]
    ]


def check_recognition(answer: dict[str, Any], expected: str) -> None:
    """The largest face must be a match for the expected person (AssertionError marks a failure)."""
    faces = answer.get("faces")
    assert faces, "no face found"
    first = faces[0]
    assert first["decision"] == "match", f"decision {first['decision']}, expected a match for {expected}"
    best = first["matches"][0]
    assert best["name"] == expected, (
        f"recognised {best['name']!r} ({best['similarity']}), expected {expected!r}"
    )
