"""The version policy in config.pbtxt: what a restarted Triton loads, rewritten atomically."""

import os
import stat
from pathlib import Path

import pytest

from orchestrator.modelrepo import repository
from orchestrator.modelrepo.catalog import ARCFACE
from orchestrator.modelrepo.repository import (
    CONFIG_FILE,
    Target,
    model_config,
    parse,
    read_version_policy,
    render,
    write_version_policy,
)

pytestmark = pytest.mark.unit


def model_dir(root: Path, target: Target = "gpu", versions: tuple[int, ...] = (1, 2, 3)) -> Path:
    """An ``arcface`` model directory with a v1-only config and the given version directories."""
    path = root / target / ARCFACE.name
    path.mkdir(parents=True)
    (path / CONFIG_FILE).write_text(render(model_config(ARCFACE, target)))
    (path / CONFIG_FILE).chmod(0o644)
    for version in versions:
        (path / str(version)).mkdir()
    return path


def without_policy(text: str) -> str:
    config = parse(text)
    config.ClearField("version_policy")
    return render(config)


@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_the_policy_round_trips_and_nothing_else_changes(tmp_path: Path, target: Target) -> None:
    path = model_dir(tmp_path, target)
    before = (path / CONFIG_FILE).read_text()
    assert read_version_policy(path) == ["1"]

    write_version_policy(path, [3, "1", 3])

    after = (path / CONFIG_FILE).read_text()
    assert read_version_policy(path) == ["1", "3"]
    assert list(parse(after).version_policy.specific.versions) == [1, 3]
    assert without_policy(after) == without_policy(before)
    assert after == render(model_config(ARCFACE, target, versions=(1, 3)))


def test_a_policy_other_than_specific_reads_as_what_triton_would_load(tmp_path: Path) -> None:
    path = model_dir(tmp_path, versions=(1, 2, 10))
    config = parse((path / CONFIG_FILE).read_text())
    config.version_policy.latest.num_versions = 2
    (path / CONFIG_FILE).write_text(render(config))
    assert read_version_policy(path) == ["2", "10"]
    config.version_policy.all.SetInParent()
    (path / CONFIG_FILE).write_text(render(config))
    assert read_version_policy(path) == ["1", "2", "10"]
    config.ClearField("version_policy")  # Triton's default: the latest one
    (path / CONFIG_FILE).write_text(render(config))
    assert read_version_policy(path) == ["10"]


@pytest.mark.parametrize("versions", [[1, 4], ["7"], []], ids=["one-missing", "only-missing", "none"])
def test_a_version_without_its_directory_or_no_version_is_refused(
    tmp_path: Path, versions: list[int | str]
) -> None:
    path = model_dir(tmp_path)
    (path / "4").write_text("a file is not a version directory")
    before = (path / CONFIG_FILE).read_text()
    with pytest.raises(ValueError, match="version"):
        write_version_policy(path, versions)
    assert (path / CONFIG_FILE).read_text() == before


def test_an_unparsable_config_is_a_value_error(tmp_path: Path) -> None:
    path = model_dir(tmp_path)
    (path / CONFIG_FILE).write_text("version_policy { specific {")
    with pytest.raises(ValueError, match="not a Triton model config"):
        read_version_policy(path)
    with pytest.raises(ValueError, match="not a Triton model config"):
        write_version_policy(path, [1])


def test_the_write_leaves_no_temporary_file_and_keeps_the_mode(tmp_path: Path) -> None:
    path = model_dir(tmp_path)
    entries = sorted(os.listdir(path))
    write_version_policy(path, [1, 2])
    assert sorted(os.listdir(path)) == entries
    assert stat.S_IMODE((path / CONFIG_FILE).stat().st_mode) == 0o644


def test_the_file_and_its_directory_reach_the_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = model_dir(tmp_path)
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(repository.os, "fsync", fsync)
    write_version_policy(path, [1, 2])
    assert synced == ["file", "dir"]


def test_a_write_that_fails_midway_leaves_the_old_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = model_dir(tmp_path)
    before = (path / CONFIG_FILE).read_text()
    entries = sorted(os.listdir(path))

    def crash(src: object, dst: object) -> None:
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(repository.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        write_version_policy(path, [1, 2])
    assert (path / CONFIG_FILE).read_text() == before
    assert sorted(os.listdir(path)) == entries


def test_a_hard_linked_config_changes_only_in_this_repository(tmp_path: Path) -> None:
    path = model_dir(tmp_path / "ours")
    theirs = tmp_path / "theirs" / ARCFACE.name
    theirs.mkdir(parents=True)
    os.link(path / CONFIG_FILE, theirs / CONFIG_FILE)
    before = (theirs / CONFIG_FILE).read_text()

    write_version_policy(path, [2])

    assert read_version_policy(path) == ["2"]
    assert (theirs / CONFIG_FILE).read_text() == before
    assert (theirs / CONFIG_FILE).stat().st_nlink == 1
    assert not (path / CONFIG_FILE).samefile(theirs / CONFIG_FILE)
