"""A job's upload read into its items: each image file of a ``recognize`` job, or each row of
an ``enrol`` archive's ``people.csv`` with its photos (the columns of ``facerec import``:
``external_id,name,age,gender,address,photos[,attributes]``, ``photos`` ``;``-separated
names in the archive). Everything is checked before anything is stored: a bad upload is a
4xx that changes nothing."""

from __future__ import annotations

import csv
import io
import json
import lzma
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import PurePosixPath
from typing import Any

from pydantic import ValidationError

from orchestrator.api.person_body import MAX_PHOTOS
from orchestrator.core.errors import ImageTooLarge, InvalidRequest
from orchestrator.db.jobs import NewItem
from orchestrator.db.tables import PersonCreate

PEOPLE_CSV = "people.csv"
REQUIRED = ("external_id", "name", "photos")
MAX_UNPACKED = 20
"""How much larger than packed an archive's files may be: images barely compress."""


def _images_of_archive(
    archive: zipfile.ZipFile, max_image_bytes: int, max_total_bytes: int | None
) -> dict[str, zipfile.ZipInfo]:
    """The archive's files by name, without directories and the metadata of macOS's archiver.

    Their unpacked sizes are checked before any is read, so a zip bomb is refused unopened:
    each within an image's limit, all together within ``max_total_bytes`` and within
    ``MAX_UNPACKED`` × their packed size.
    """
    members = {}
    for info in archive.infolist():
        path = PurePosixPath(info.filename)
        if not path.parts or info.is_dir() or path.parts[0] == "__MACOSX" or path.name.startswith("."):
            continue
        if info.file_size > max_image_bytes:
            raise ImageTooLarge(
                f"{info.filename} is {info.file_size} bytes unpacked; the limit is {max_image_bytes}"
            )
        members[info.filename] = info
    unpacked = sum(info.file_size for info in members.values())
    packed = sum(info.compress_size for info in members.values())
    if unpacked > MAX_UNPACKED * max(packed, 1) and unpacked > max_image_bytes:
        raise ImageTooLarge(f"the archive unpacks to {unpacked} bytes from {packed}: not images")
    if max_total_bytes is not None and unpacked > max_total_bytes:
        raise ImageTooLarge(f"the archive unpacks to {unpacked} bytes; the limit is {max_total_bytes}")
    return members


UNPACK_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    OSError,
    EOFError,
    NotImplementedError,
    RuntimeError,
    ValueError,
)
"""What zipfile raises for a damaged or unsupported archive or member (bad CRC, broken stream,
unknown method, encrypted, undecodable name): the upload's fault, never a 500."""


def open_archive(data: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except UNPACK_ERRORS as error:
        raise InvalidRequest(f"the archive is not a zip file: {error}") from None


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A member, inflated no further than the size its header declares (which was checked):
    ``ZipFile.read`` inflates a member whole before it notices a header that understates it."""
    try:
        with archive.open(info) as member:
            return member.read(info.file_size)
    except UNPACK_ERRORS as error:
        raise InvalidRequest(f"{info.filename} cannot be unpacked: {error}") from None


def recognize_items(
    files: Sequence[tuple[str, bytes]],
    archive: bytes | None,
    max_items: int,
    max_image_bytes: int,
    max_total_bytes: int | None = None,
) -> list[NewItem]:
    """One item per image: the files in their order, then the archive's in name order."""
    images = list(files)
    if archive is not None:
        with open_archive(archive) as zipped:
            members = _images_of_archive(zipped, max_image_bytes, max_total_bytes)
            if len(images) + len(members) > max_items:
                raise InvalidRequest(f"more than {max_items} images in one job")
            images += [(name, _read(zipped, members[name])) for name in sorted(members)]
    if not images:
        raise InvalidRequest("a job needs images: files, or an archive")
    if len(images) > max_items:
        raise InvalidRequest(f"{len(images)} images; a job takes at most {max_items}")
    return [NewItem(filename=name, images=[(name, data)]) for name, data in images]


def _person(line: int, cells: dict[str, str]) -> dict[str, object]:
    fields: dict[str, object] = {
        name: cells[name] for name in ("external_id", "name", "age", "gender", "address") if cells.get(name)
    }
    age = cells.get("age", "")
    if age.isascii() and age.isdigit():
        fields["age"] = int(age)  # a cell is text, and PersonCreate takes JSON's integer, not "36"
    if cells.get("attributes"):
        try:
            fields["attributes"] = json.loads(cells["attributes"])
        except json.JSONDecodeError as error:
            raise InvalidRequest(f"{PEOPLE_CSV} line {line}: attributes are not JSON: {error}") from None
    try:
        return PersonCreate.model_validate(fields).model_dump(mode="json", exclude_none=True)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise InvalidRequest(f"{PEOPLE_CSV} line {line}: {problems}") from None


def _rows(reader: csv.DictReader[str]) -> Iterator[dict[Any, Any]]:
    try:
        yield from reader
    except csv.Error as error:  # a cell over the csv module's 128 KiB limit
        raise InvalidRequest(f"{PEOPLE_CSV} line {reader.reader.line_num}: {error}") from None


def enrol_items(
    archive: bytes | None, max_items: int, max_image_bytes: int, max_total_bytes: int | None = None
) -> list[NewItem]:
    """One item per row of the archive's ``people.csv``, with its photos."""
    if archive is None:
        raise InvalidRequest(f"an enrol job takes an archive: a zip with {PEOPLE_CSV} and the photos")
    with open_archive(archive) as zipped:
        members = _images_of_archive(zipped, max_image_bytes, max_total_bytes)
        tables = [name for name in members if PurePosixPath(name).name == PEOPLE_CSV]
        if len(tables) != 1:
            found = f"{len(tables)}: {', '.join(sorted(tables))}" if tables else "none"
            raise InvalidRequest(f"an enrol archive holds one {PEOPLE_CSV} (found {found})")
        (table,) = tables
        base = PurePosixPath(table).parent
        try:
            text = _read(zipped, members[table]).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidRequest(f"{PEOPLE_CSV} is not UTF-8") from None
        reader = csv.DictReader(io.StringIO(text, newline=""))
        try:
            header = [name.strip() for name in reader.fieldnames or []]
        except csv.Error as error:
            raise InvalidRequest(f"{PEOPLE_CSV} line 1: {error}") from None
        missing = [name for name in REQUIRED if name not in header]
        if missing:
            raise InvalidRequest(f"{PEOPLE_CSV} has no column {', '.join(missing)}")
        reader.fieldnames = header
        items: list[NewItem] = []
        seen: dict[str, int] = {}
        for cells in _rows(reader):
            line = reader.line_num
            text_cells = {
                str(k): (v or "").strip() for k, v in cells.items() if k is not None and isinstance(v, str)
            }
            person = _person(line, text_cells)
            if "external_id" not in person:  # as for `facerec import`: a retried row is found by it
                raise InvalidRequest(f"{PEOPLE_CSV} line {line}: no external_id")
            external_id = str(person["external_id"])
            if external_id in seen:
                raise InvalidRequest(
                    f"{PEOPLE_CSV} line {line}: external_id {external_id!r} repeats line {seen[external_id]}"
                )
            seen[external_id] = line
            names = [name.strip() for name in text_cells.get("photos", "").split(";") if name.strip()]
            if not 1 <= len(names) <= MAX_PHOTOS:
                raise InvalidRequest(
                    f"{PEOPLE_CSV} line {line}: {len(names)} photos; 1 to {MAX_PHOTOS} a person"
                )
            paths = [str(base / name) if str(base) != "." else name for name in names]
            absent = [name for name, path in zip(names, paths, strict=True) if path not in members]
            if absent:
                raise InvalidRequest(f"{PEOPLE_CSV} line {line}: no photo {', '.join(absent)} in the archive")
            if len(items) == max_items:
                raise InvalidRequest(f"more than {max_items} people in one job")
            photos = [(name, _read(zipped, members[path])) for name, path in zip(names, paths, strict=True)]
            items.append(NewItem(filename=f"{PEOPLE_CSV}:{line}", images=photos, params=person))
    if not items:
        raise InvalidRequest(f"{PEOPLE_CSV} has no rows")
    return items
