from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis

from orchestrator.runtime.local_valkey import LocalValkey, LocalValkeyError
from orchestrator.runtime.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PDEATHSIG")


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting for its new parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of sockets listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if int(port_hex, 16) == port and fields[3] == "0A":  # 0A = LISTEN
                found.add(address)
    return found


@pytest.mark.integration
def test_serves_a_bounded_cache_on_loopback(local_valkey: LocalValkey) -> None:
    client = redis.Redis.from_url(local_valkey.url, socket_timeout=2.0)
    try:
        assert client.ping()
        assert client.info("server")["process_id"] == local_valkey.pid
        config = client.config_get("*")
    finally:
        client.close()
    assert config["bind"] == "127.0.0.1"
    assert config["maxmemory"] == str(64 * 1024 * 1024)
    assert config["maxmemory-policy"] == "allkeys-lru"
    assert config["save"] == ""
    assert config["appendonly"] == "no"
    assert config["dir"] == str(local_valkey.data_dir)
    assert local_valkey.log_path.is_file()


@pytest.mark.integration
@linux_only
def test_listens_on_127_0_0_1_only(local_valkey: LocalValkey) -> None:
    assert _listening_addresses(local_valkey.port) == {"0100007F"}


@pytest.mark.integration
def test_default_maxmemory_and_stop_by_pid(valkey_dir: Path) -> None:
    server = LocalValkey(valkey_dir, free_port())
    with server:
        pid = server.pid
        assert pid is not None
        assert os.getpgid(pid) == pid  # its own process group, stopped as a group
        client = redis.Redis.from_url(server.url, socket_timeout=2.0)
        try:
            assert client.config_get("maxmemory")["maxmemory"] == str(256 * 1024 * 1024)
        finally:
            client.close()
    assert server.pid is None
    assert not _alive(pid)
    server.stop()  # idempotent


@pytest.mark.integration
def test_a_taken_port_is_a_clear_error(local_valkey: LocalValkey, valkey_dir: Path) -> None:
    with pytest.raises(LocalValkeyError, match="in use"):
        LocalValkey(valkey_dir, local_valkey.port).start()


@pytest.mark.unit
def test_a_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    server = LocalValkey(tmp_path, free_port(), binary=tmp_path / "valkey-server")
    with pytest.raises(LocalValkeyError, match="binary not found"):
        server.start()
    assert server.pid is None


@pytest.mark.integration
def test_a_server_that_cannot_start_reports_its_log(valkey_dir: Path) -> None:
    server = LocalValkey(valkey_dir, free_port(), maxmemory="not-a-size")
    with pytest.raises(LocalValkeyError, match="exited"):
        server.start()
    assert server.pid is None


@pytest.mark.integration
@linux_only
def test_does_not_outlive_a_killed_parent(valkey_dir: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from orchestrator.runtime.local_valkey import LocalValkey
        server = LocalValkey(Path({str(valkey_dir)!r}), {free_port()})
        server.start()
        print(server.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )
    pid = int(result.stdout.strip())
    deadline = time.monotonic() + 5.0
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)
