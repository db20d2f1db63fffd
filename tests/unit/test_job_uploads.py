"""A job's upload read into its items (``orchestrator.jobs.uploads``): every image of a
``recognize`` job, every row of an ``enrol`` archive's ``people.csv`` with its photos, and
each way an upload is refused before anything is stored."""

from __future__ import annotations

import io
import random
import struct
import tracemalloc
import zipfile
from collections.abc import Mapping

import pytest

from orchestrator.core.errors import ImageTooLarge, InvalidRequest
from orchestrator.jobs.uploads import enrol_items, recognize_items

pytestmark = pytest.mark.unit

LIMIT = 10_000
"""Bytes of one unpacked image, as ``max_image_bytes``."""
HEADER = "external_id,name,age,gender,address,photos,attributes"


def zipped(members: Mapping[str, bytes | str], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of these members, in this order (a name ending in / is a directory)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def people(*rows: str, header: str = HEADER, folder: str = "", photos: Mapping[str, bytes] = {}) -> bytes:
    """An enrol archive: ``people.csv`` (in ``folder``) and the photos beside it."""
    table = "\n".join([header, *rows]) + "\n"
    return zipped({f"{folder}people.csv": table} | {f"{folder}{name}": data for name, data in photos.items()})


@pytest.fixture
def no_member_read(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Members opened for reading; a refusal "before reading" leaves it empty."""
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def open_member(
        self: zipfile.ZipFile, name: str | zipfile.ZipInfo, mode: str = "r", **kwargs: object
    ) -> object:
        if mode == "r":  # not the test's own writing of the archive
            opened.append(name.filename if isinstance(name, zipfile.ZipInfo) else name)
        return real_open(self, name, mode, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(zipfile.ZipFile, "open", open_member)
    return opened


# recognize


def test_files_come_first_in_their_order_then_the_archive_in_name_order() -> None:
    archive = zipped({"b/2.jpg": b"b2", "a.jpg": b"a", "b/1.jpg": b"b1"})
    items = recognize_items([("z.jpg", b"z"), ("y.jpg", b"y")], archive, 10, LIMIT)
    assert [(item.filename, list(item.images), item.params) for item in items] == [
        ("z.jpg", [("z.jpg", b"z")], {}),
        ("y.jpg", [("y.jpg", b"y")], {}),
        ("a.jpg", [("a.jpg", b"a")], {}),
        ("b/1.jpg", [("b/1.jpg", b"b1")], {}),
        ("b/2.jpg", [("b/2.jpg", b"b2")], {}),
    ]


def test_directories_macos_metadata_and_dotfiles_are_not_images() -> None:
    archive = zipped(
        {
            "photos/": b"",
            "photos/one.jpg": b"1",
            "__MACOSX/photos/._one.jpg": b"resource fork",
            "photos/.DS_Store": b"finder",
            ".hidden.jpg": b"hidden",
        }
    )
    items = recognize_items([], archive, 10, LIMIT)
    assert [item.filename for item in items] == ["photos/one.jpg"]


def test_more_images_than_a_job_takes_is_refused_counting_files_and_archive() -> None:
    archive = zipped({"a.jpg": b"a", "b.jpg": b"b"})
    with pytest.raises(InvalidRequest) as excinfo:
        recognize_items([("f.jpg", b"f")], archive, 2, LIMIT)
    assert "more than 2 images" in excinfo.value.detail
    with pytest.raises(InvalidRequest, match="at most 2"):
        recognize_items([("1", b"1"), ("2", b"2"), ("3", b"3")], None, 2, LIMIT)
    assert len(recognize_items([("f.jpg", b"f")], zipped({"a.jpg": b"a"}), 2, LIMIT)) == 2


@pytest.mark.parametrize(
    "archive",
    [None, zipped({}), zipped({"photos/": b"", "__MACOSX/._x": b"m", ".DS_Store": b"d"})],
    ids=["nothing", "an empty zip", "a zip without images"],
)
def test_a_job_without_images_is_refused(archive: bytes | None) -> None:
    with pytest.raises(InvalidRequest, match="a job needs images"):
        recognize_items([], archive, 10, LIMIT)


@pytest.mark.parametrize("data", [b"", b"not a zip at all", zipped({"a.jpg": b"a"})[:-30]])
def test_an_archive_that_is_not_a_zip_is_refused(data: bytes) -> None:
    with pytest.raises(InvalidRequest, match="not a zip file"):
        recognize_items([], data, 10, LIMIT)


def test_a_member_over_the_image_limit_is_refused_naming_it(no_member_read: list[str]) -> None:
    archive = zipped({"small.jpg": b"s", "big.jpg": bytes(range(256)) * 40}, zipfile.ZIP_STORED)
    with pytest.raises(ImageTooLarge) as excinfo:
        recognize_items([], archive, 10, LIMIT)
    assert "big.jpg is 10240 bytes" in excinfo.value.detail
    assert no_member_read == []


def test_a_zip_bomb_is_refused_before_a_byte_is_inflated(no_member_read: list[str]) -> None:
    # Each member is under the image limit; together they inflate 1000-fold: not photos.
    bomb = zipped({f"{n:03}.jpg": b"\0" * (LIMIT - 1) for n in range(50)})
    assert len(bomb) < LIMIT
    with pytest.raises(ImageTooLarge, match="not images"):
        recognize_items([], bomb, 100, LIMIT)
    assert no_member_read == []


def lying_member(inflated_mib: int, declared: int) -> bytes:
    """A zip of one deflated member of zeros whose headers declare ``declared`` bytes."""
    buffer = io.BytesIO()
    info = zipfile.ZipInfo("bomb.jpg")
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buffer, "w") as archive, archive.open(info, "w") as member:
        chunk = bytes(1 << 20)
        for _ in range(inflated_mib):
            member.write(chunk)
    data = bytearray(buffer.getvalue())
    struct.pack_into("<I", data, data.find(b"PK\x03\x04") + 22, declared)  # local header
    struct.pack_into("<I", data, data.rfind(b"PK\x01\x02") + 24, declared)  # central directory
    return bytes(data)


def test_a_member_that_understates_its_size_is_refused_without_inflating_it() -> None:
    """Its declared size passes the checks: it must not be inflated past it (zipfile's
    ``read()`` would inflate all 64 MiB in one call before noticing the CRC)."""
    bomb = lying_member(inflated_mib=64, declared=100)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidRequest, match=r"bomb\.jpg"):
            recognize_items([], bomb, 10, LIMIT)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{peak / 2**20:.0f} MiB allocated to refuse a {len(bomb)}-byte upload"


def test_a_corrupt_member_is_an_invalid_request_not_a_server_error() -> None:
    archive = bytearray(zipped({"a.jpg": b"hello world" * 10}, zipfile.ZIP_STORED))
    archive[archive.find(b"hello")] ^= 0xFF  # its bytes no longer match its CRC
    with pytest.raises(InvalidRequest, match=r"a\.jpg"):
        recognize_items([], bytes(archive), 10, LIMIT)


def test_a_member_without_a_name_is_skipped() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo(""), b"nameless")  # by hand: zipfile's own names have one
        archive.writestr("a.jpg", b"a")
    assert [item.filename for item in recognize_items([], buffer.getvalue(), 10, LIMIT)] == ["a.jpg"]


def test_a_damaged_archive_is_always_an_invalid_request() -> None:
    """Bytes flipped at random in a good archive (its directory, headers, streams): zipfile
    then raises half a dozen kinds of error, each of which was a 500."""
    good = people(
        "E1,Ada,,,,a.jpg;b.jpg,",
        "E2,Bob,,,,b.jpg,",
        photos={"a.jpg": bytes(range(256)) * 8, "b.jpg": b"hi" * 500},
    )
    chance = random.Random(7)
    refused, escaped = 0, set()
    for _ in range(3000):
        damaged = bytearray(good)
        for _ in range(chance.randint(1, 4)):
            damaged[chance.randrange(len(damaged))] = chance.randrange(256)
        for read in (
            lambda data: recognize_items([], data, 100, LIMIT),
            lambda data: enrol_items(data, 100, LIMIT),
        ):
            try:
                read(bytes(damaged))
            except (InvalidRequest, ImageTooLarge):
                refused += 1
            except Exception as error:
                escaped.add(f"{type(error).__name__}: {error}")
    assert not escaped, sorted(escaped)[:5]
    assert refused > 3000  # most damage lands where zipfile notices it: the loop tests something


# enrol


def test_each_row_is_one_person_with_validated_fields_and_its_photos() -> None:
    archive = people(
        'E1,  Ada Lovelace ,36,female,"12 St James\'s Square, London",a.jpg;b.jpg,'
        '"{""title"": ""countess""}"',
        "E2,Charles Babbage,,,,b.jpg,",
        photos={"a.jpg": b"photo a", "b.jpg": b"photo b"},
    )
    items = enrol_items(archive, 10, LIMIT)
    assert [(item.filename, list(item.images), item.params) for item in items] == [
        (
            "people.csv:2",
            [("a.jpg", b"photo a"), ("b.jpg", b"photo b")],
            {
                "external_id": "E1",
                "name": "Ada Lovelace",
                "age": 36,
                "gender": "female",
                "address": "12 St James's Square, London",
                "attributes": {"title": "countess"},
            },
        ),
        (
            "people.csv:3",
            [("b.jpg", b"photo b")],
            {"external_id": "E2", "name": "Charles Babbage", "attributes": {}},
        ),
    ]


def test_photos_are_found_beside_a_people_csv_in_a_folder() -> None:
    archive = people(
        "E1,Ada,,,,ada/1.jpg;2.jpg,", folder="export/", photos={"ada/1.jpg": b"one", "2.jpg": b"two"}
    )
    (item,) = enrol_items(archive, 10, LIMIT)
    assert list(item.images) == [("ada/1.jpg", b"one"), ("2.jpg", b"two")]
    assert item.filename == "people.csv:2"


def test_a_header_with_excel_s_byte_order_mark_and_spaces_is_read() -> None:
    archive = zipped({"people.csv": "\ufeff external_id , name , photos\nE1,Ada,a.jpg\n", "a.jpg": b"a"})
    (item,) = enrol_items(archive, 10, LIMIT)
    assert item.params == {"external_id": "E1", "name": "Ada", "attributes": {}}


@pytest.mark.parametrize("column", ["external_id", "name", "photos"])
def test_a_missing_column_is_refused_naming_it(column: str) -> None:
    header = ",".join(name for name in HEADER.split(",") if name != column)
    with pytest.raises(InvalidRequest) as excinfo:
        enrol_items(people("E1,Ada,,,,a.jpg,", header=header, photos={"a.jpg": b"a"}), 10, LIMIT)
    assert excinfo.value.detail == f"people.csv has no column {column}"


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("E2,Bob,,,,missing.jpg,", "people.csv line 3: no photo missing.jpg in the archive"),
        ("E1,Bob,,,,a.jpg,", "people.csv line 3: external_id 'E1' repeats line 2"),
        ("E2,Bob,forty,,,a.jpg,", "people.csv line 3: age"),
        ("E2,Bob,151,,,a.jpg,", "people.csv line 3: age"),
        ('E2,Bob,,,,a.jpg,"{not json', "people.csv line 3: attributes are not JSON"),
        ("E2,Bob,,,,a.jpg,[1]", "people.csv line 3: attributes"),
        ("E2,,,,,a.jpg,", "people.csv line 3: name"),
        ("E2,Bob,,,,,", "people.csv line 3: 0 photos"),
        (f"E2,Bob,,,,{';'.join(['a.jpg'] * 17)},", "people.csv line 3: 17 photos"),
        (",Bob,,,,a.jpg,", "people.csv line 3: no external_id"),
    ],
    ids=[
        "missing photo",
        "repeated external_id",
        "age not a number",
        "age out of range",
        "attributes not JSON",
        "attributes not an object",
        "no name",
        "no photos",
        "too many photos",
        "no external_id",
    ],
)
def test_a_bad_row_is_refused_naming_its_line(row: str, expected: str) -> None:
    archive = people("E1,Ada,,,,a.jpg,", row, photos={"a.jpg": b"a"})
    with pytest.raises(InvalidRequest) as excinfo:
        enrol_items(archive, 10, LIMIT)
    assert excinfo.value.detail.startswith(expected), excinfo.value.detail


def test_a_row_too_long_for_the_csv_reader_is_an_invalid_request() -> None:
    # The csv module's field limit is 128 KiB; the table itself is under the member limit.
    archive = people("E1,Ada,,,," + "a.jpg;" * 25_000 + ",", photos={"a.jpg": b"a"})
    with pytest.raises(InvalidRequest, match=r"people\.csv line 2: field larger than field limit"):
        enrol_items(archive, 10, 1 << 20)


def test_more_people_than_a_job_takes_is_refused() -> None:
    archive = people(*(f"E{n},P{n},,,,a.jpg," for n in range(3)), photos={"a.jpg": b"a"})
    with pytest.raises(InvalidRequest, match="more than 2 people"):
        enrol_items(archive, 2, LIMIT)
    assert len(enrol_items(archive, 3, LIMIT)) == 3


@pytest.mark.parametrize(
    ("archive", "expected"),
    [
        (None, "an enrol job takes an archive"),
        (
            zipped({"a.jpg": b"a", "people.txt": "external_id,name,photos\n"}),
            r"one people\.csv \(found none\)",
        ),
        (
            zipped({"a/people.csv": "external_id,name,photos\n", "b/people.csv": "x\n"}),
            r"one people\.csv \(found 2: a/people\.csv, b/people\.csv\)",
        ),
        (people(), "people.csv has no rows"),
        (zipped({"people.csv": b"external_id,name,photos\nE1,\xff,a.jpg\n", "a.jpg": b"a"}), "not UTF-8"),
        (b"PK not really", "not a zip file"),
    ],
    ids=["no archive", "no people.csv", "two people.csv", "no rows", "not UTF-8", "not a zip"],
)
def test_an_archive_without_people_to_enrol_is_refused(archive: bytes | None, expected: str) -> None:
    with pytest.raises(InvalidRequest, match=expected):
        enrol_items(archive, 10, LIMIT)


def test_an_archive_unpacking_past_the_jobs_upload_limit_is_refused_unopened() -> None:
    # Photos barely compress, so the ratio alone lets 20 × a large upload through: the total is bounded too.
    archive = zipped({f"{n}.jpg": bytes(range(256)) * 30 for n in range(4)}, zipfile.ZIP_STORED)
    with pytest.raises(ImageTooLarge, match="unpacks to 30720 bytes; the limit is 30000"):
        recognize_items([], archive, 10, LIMIT, 30_000)
    assert len(recognize_items([], archive, 10, LIMIT, 30_720)) == 4
    with pytest.raises(ImageTooLarge, match="the limit is 30000"):
        enrol_items(archive, 10, LIMIT, 30_000)
