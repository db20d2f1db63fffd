"""LiveView: the in-memory view of state, face owners and keys, on every database backend."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence

from orchestrator.db import Gallery
from orchestrator.db.tables import ApiKeyPublic, PersonCreate, PersonSummary, PersonUpdate
from orchestrator.gallery.live_view import LiveView
from tests.db.test_faces import enrol, unit_vectors

LONG = 3600.0  # never refreshes by itself within a test


def named(owners: Mapping[int, PersonSummary]) -> dict[int, tuple[int, str]]:
    """face id → (person id, name) of the owners a lookup gave."""
    return {face_id: (person.id, person.name) for face_id, person in owners.items()}


async def test_state_is_remembered_until_refresh_or_invalidate(gallery: Gallery) -> None:
    live = LiveView(gallery, LONG)
    first = await live.state()
    gallery.bump_generation()  # as another replica would
    assert (await live.state()).generation == first.generation
    live.invalidate()
    assert (await live.state()).generation == first.generation + 1


async def test_a_zero_refresh_reads_every_time(gallery: Gallery) -> None:
    live = LiveView(gallery, 0.0)
    first = await live.state()
    gallery.bump_generation()
    assert (await live.state()).generation == first.generation + 1


async def test_state_refreshes_after_refresh_s(gallery: Gallery) -> None:
    live = LiveView(gallery, 0.2)
    first = await live.state()
    gallery.set_active("2", "arcface-v2-g1")
    await asyncio.sleep(0.25)
    state = await live.state()
    assert (state.active_model_version, state.active_collection) == ("2", "arcface-v2-g1")
    assert first.active_model_version == "1"


async def test_owners_are_forgotten_when_another_replica_deletes_or_renames(gallery: Gallery) -> None:
    live = LiveView(gallery, 0.2)
    person = gallery.create_person(PersonCreate(name="Ada"))
    kept, deleted = (enrol(gallery, person.id, v, tag=i) for i, v in enumerate(unit_vectors(2)))
    await live.state()
    assert named(await live.owners([kept, deleted, 999_999])) == {
        kept: (person.id, "Ada"),
        deleted: (person.id, "Ada"),
    }
    gallery.delete_face(deleted)  # another replica: nothing here is invalidated
    gallery.update_person(person.id, PersonUpdate(name="Ada L."))
    assert named(await live.owners([kept, deleted]))[deleted] == (person.id, "Ada")  # within refresh_s
    await asyncio.sleep(0.25)
    await live.state()  # sees the new generation
    assert named(await live.owners([kept, deleted])) == {kept: (person.id, "Ada L.")}


async def test_new_faces_are_looked_up_without_a_refresh(gallery: Gallery) -> None:
    live = LiveView(gallery, LONG)
    person = gallery.create_person(PersonCreate(name="Grace"))
    first = enrol(gallery, person.id, unit_vectors(1, seed=1)[0])
    await live.state()
    assert named(await live.owners([first])) == {first: (person.id, "Grace")}
    second = enrol(gallery, person.id, unit_vectors(1, seed=2)[0], tag=1)
    assert named(await live.owners([first, second])) == {
        first: (person.id, "Grace"),
        second: (person.id, "Grace"),
    }


async def test_keys_are_remembered_and_revocation_here_is_seen_at_once(gallery: Gallery) -> None:
    live = LiveView(gallery, LONG)
    public, plaintext = gallery.create_key("reader", "recognize")
    found = await live.authenticate(plaintext)
    assert found is not None and found.id == public.id
    assert await live.authenticate("not-a-key") is None
    with live.writing():
        gallery.revoke_key(public.id)
    assert await live.authenticate(plaintext) is None


async def test_a_key_revoked_elsewhere_stops_working_after_refresh_s(gallery: Gallery) -> None:
    live = LiveView(gallery, 0.2)
    public, plaintext = gallery.create_key("reader", "recognize")
    assert await live.authenticate(plaintext) is not None
    gallery.revoke_key(public.id)
    assert await live.authenticate(plaintext) is not None  # remembered
    await asyncio.sleep(0.25)
    assert await live.authenticate(plaintext) is None


async def test_wrong_keys_cost_no_read_each_and_a_key_made_elsewhere_works_at_once(
    gallery: Gallery,
) -> None:
    live = LiveView(gallery, 5.0)
    reads = 0
    read_keys = gallery.live_keys

    def counted() -> dict[str, ApiKeyPublic]:
        nonlocal reads
        reads += 1
        return read_keys()

    gallery.live_keys = counted  # type: ignore[method-assign]
    answers = await asyncio.gather(*(live.authenticate(f"wrong-{i}") for i in range(500)))
    assert answers == [None] * 500
    assert reads <= 2  # one read for the table, at most one more for the misses
    _, plaintext = gallery.create_key("made on another replica", "recognize")
    await asyncio.sleep(0.6)  # past a tenth of refresh_s: a miss reads again
    found = await live.authenticate(plaintext)
    assert found is not None and found.name == "made on another replica"


async def test_a_key_use_is_recorded_once_per_resolution(gallery: Gallery) -> None:
    live = LiveView(gallery, LONG)
    public, plaintext = gallery.create_key("reader", "recognize")
    assert public.last_used_at is None
    await asyncio.gather(*(live.authenticate(plaintext) for _ in range(20)))
    (stored,) = gallery.list_keys()
    assert stored.last_used_at is not None
    with live.writing():  # read afresh: the use recorded above is not written again
        pass
    used = await live.authenticate(plaintext)
    assert used is not None and used.last_used_at == stored.last_used_at


async def test_writing_invalidates_even_when_the_write_fails(gallery: Gallery) -> None:
    live = LiveView(gallery, LONG)
    first = await live.state()
    gallery.bump_generation()
    try:
        with live.writing():
            raise RuntimeError("half done")
    except RuntimeError:
        pass
    assert (await live.state()).generation == first.generation + 1


async def test_owners_known_before_a_lookup_survive_a_write_during_it(gallery: Gallery) -> None:
    """The defect behind "unknown" under enrol-and-delete traffic (issue 20).

    A recognition whose hits mix remembered faces with a new one looks the new one up; a
    write through this process meanwhile (an enrolment or delete elsewhere in the gallery)
    forgets the remembered owners. The answer must still name every face's owner.
    """
    live = LiveView(gallery, LONG)
    obama, biden = (gallery.create_person(PersonCreate(name=n)) for n in ("Obama", "Biden"))
    permanent = enrol(gallery, obama.id, unit_vectors(1, seed=1)[0])
    await live.state()
    assert named(await live.owners([permanent])) == {permanent: (obama.id, "Obama")}
    temporary = enrol(gallery, biden.id, unit_vectors(1, seed=2)[0], tag=1)

    looking_up, release = threading.Event(), threading.Event()
    lookup = gallery.face_owners

    def slow_lookup(ids: Sequence[int]) -> dict[int, PersonSummary]:
        looking_up.set()
        release.wait(10)
        return lookup(ids)

    gallery.face_owners = slow_lookup  # type: ignore[method-assign]
    answer = asyncio.create_task(live.owners([permanent, temporary]))
    assert await asyncio.to_thread(looking_up.wait, 10)
    live.invalidate()  # a write through this process, while the lookup runs
    release.set()
    assert named(await answer) == {permanent: (obama.id, "Obama"), temporary: (biden.id, "Biden")}


async def test_owners_carry_the_public_person_and_any_change_of_it(gallery: Gallery) -> None:
    """A match names the person with all of its public fields: a PATCH of any of them is seen
    at once through this process and within refresh_s through another."""
    here, elsewhere = LiveView(gallery, LONG), LiveView(gallery, 0.2)
    person = gallery.create_person(PersonCreate(name="Ada", age=36, gender="f", attributes={"k": 1}))
    face = enrol(gallery, person.id, unit_vectors(1, seed=3)[0])
    for live in (here, elsewhere):
        await live.state()
        owner = (await live.owners([face]))[face]
        assert (owner.age, owner.gender, owner.address, owner.attributes) == (36, "f", None, {"k": 1})
    with here.writing():
        gallery.update_person(person.id, PersonUpdate(age=37, address="London"))
    await here.state()
    assert (await here.owners([face]))[face].model_dump() == {
        "id": person.id,
        "name": "Ada",
        "external_id": None,
        "age": 37,
        "gender": "f",
        "address": "London",
        "attributes": {"k": 1},
    }
    assert (await elsewhere.owners([face]))[face].age == 36  # within refresh_s
    await asyncio.sleep(0.25)
    await elsewhere.state()
    assert (await elsewhere.owners([face]))[face].age == 37
