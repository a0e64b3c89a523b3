"""deploy/patroni/: the configuration Patroni validates, and a live run of it on this
machine (Debian's patroni and etcd-server, PostgreSQL 15's programs): two nodes under
Patroni with etcd, the receiver given both, the leader lost under load.

What the compose file adds (containers, their network) cannot run here: no container
engine; its schema is checked. The live run uses the shipped patroni.yml with each
node's values in its environment, as compose.yaml gives them, and Patroni's timings
lowered (ttl 10 s, loop_wait 2 s) so that the test ends sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from receiver.db import migrate
from testkit.cluster import cluster_folder, free_port, server_user
from testkit.failover import Failover, drained, found, serving, under_load

PATRONI = Path(__file__).resolve().parents[2] / "deploy" / "patroni"
BINDIR = Path("/usr/lib/postgresql/15/bin")
PASSWORDS = {
    "PATRONI_SUPERUSER_PASSWORD": "super-secret-1",
    "PATRONI_REPLICATION_PASSWORD": "replication-secret-2",
    "PATRONI_REWIND_PASSWORD": "super-secret-1",
    "RECEIVER_DB_PASSWORD": "receiver-secret-3",
}

needs_patroni = pytest.mark.skipif(
    not (shutil.which("patroni") and shutil.which("etcd") and BINDIR.is_dir())
    and not os.environ.get("CI"),
    reason="patroni, etcd-server and PostgreSQL 15 are installed by scripts/system-packages",
)


def test_the_compose_file_matches_the_compose_spec() -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(PATRONI / "compose.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_patroni
def test_patroni_validates_the_shipped_configuration(tmp_path: Path) -> None:
    node = _Node(tmp_path, "pg1", etcd=free_port())
    # The validator wants addresses other nodes can reach: not loopback.
    env = node.env(connect=socket.gethostname())
    shipped = subprocess.run(
        ["patroni", "--validate-config", str(PATRONI / "patroni.yml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Its one complaint here is that no etcd answers at the port given.
    complaints = [
        line for line in shipped.stdout.splitlines() + shipped.stderr.splitlines() if line
    ]
    assert [c for c in complaints if not c.startswith("etcd3.hosts")] == [], complaints
    broken = tmp_path / "broken.yml"
    broken.write_text((PATRONI / "patroni.yml").read_text().replace("scope:", "scoop:"))
    refused = subprocess.run(
        ["patroni", "--validate-config", str(broken)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode != 0
    assert "scope" in refused.stdout + refused.stderr


@pytest.mark.slow
@needs_patroni
async def test_the_receiver_on_patroni_loses_no_acknowledged_event_when_the_leader_dies(
    tmp_path: Path,
) -> None:
    with cluster_folder() as root, _cluster(root) as nodes:
        leader = await _until_leader_and_sync(nodes)
        standby = next(node for node in nodes if node is not leader)
        receiver_url = (
            f"postgresql://receiver:{PASSWORDS['RECEIVER_DB_PASSWORD']}@"
            + ",".join(f"127.0.0.1:{node.pg}" for node in nodes)
            + "/receiver?target_session_attrs=read-write"
        )
        await asyncio.to_thread(migrate.upgrade, receiver_url)
        result = Failover(synchronous=True)

        async def lose_the_leader() -> None:
            # The machine gone: Patroni killed, its PostgreSQL stopped at once.
            leader.kill()

        async with serving(receiver_url, tmp_path) as (base, log):
            answered = await under_load(
                base, result, lose_the_leader, rate=20.0, before=3.0, seconds=35.0
            )
            new_primary = standby.url(PASSWORDS["PATRONI_SUPERUSER_PASSWORD"], "receiver")
            result.found = await found(new_primary, answered)
            result.drained = await drained(new_primary)
        result.read_log(log)
        print(f"\nPatroni, ttl 10 s: {result.line()}")
        assert result.found == result.answered > 50, result.line()
        assert set(result.others) <= {503}, result.line()
        assert result.without_retry_after == 0
        assert result.drained
        assert result.tracebacks == 0, result.log[-3000:]
        # Patroni promotes once the leader's key expires (ttl): the gap is its.
        assert result.seconds_without_2xx <= 10 + 2 + 15, result.line()


# ---------------------------------------------------------------------------- helpers


@dataclass
class _Node:
    root: Path
    name: str
    etcd: int
    pg: int = 0
    api: int = 0
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.pg, self.api = free_port(), free_port()

    @property
    def data(self) -> Path:
        return self.root / self.name

    def env(self, connect: str = "127.0.0.1") -> dict[str, str]:
        """The node's environment; `connect`: the address others reach it at."""
        return {
            **os.environ,
            **PASSWORDS,
            "PATRONI_NAME": self.name,
            "PATRONI_RESTAPI_LISTEN": f"127.0.0.1:{self.api}",
            "PATRONI_RESTAPI_CONNECT_ADDRESS": f"{connect}:{self.api}",
            "PATRONI_POSTGRESQL_LISTEN": f"127.0.0.1:{self.pg}",
            "PATRONI_POSTGRESQL_CONNECT_ADDRESS": f"{connect}:{self.pg}",
            "PATRONI_POSTGRESQL_DATA_DIR": str(self.data),
            "PATRONI_POSTGRESQL_PGPASS": str(self.root / f"{self.name}.pgpass"),
            "PATRONI_ETCD3_HOSTS": f"127.0.0.1:{self.etcd}",
        }

    def url(self, password: str, database: str = "postgres") -> str:
        return f"postgresql://postgres:{password}@127.0.0.1:{self.pg}/{database}"

    def start(self, config: Path) -> None:
        with (self.root / f"{self.name}.log").open("ab") as sink:
            self.process = subprocess.Popen(
                ["patroni", str(config)],
                env=self.env(),
                user=server_user(),
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=self.root,
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        subprocess.run(
            [str(BINDIR / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
            user=server_user(),
            capture_output=True,
            timeout=60,
            check=False,
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def _config(root: Path) -> Path:
    """The shipped patroni.yml, Patroni's timings lowered and the bootstrap script and
    sockets where this machine has them."""
    text = (PATRONI / "patroni.yml").read_text()
    for shipped, here in (
        ("ttl: 30", "ttl: 10"),
        ("loop_wait: 10", "loop_wait: 2"),
        ("retry_timeout: 10", "retry_timeout: 5"),
        ("/etc/patroni/post-bootstrap.sh", str(PATRONI / "post-bootstrap.sh")),
        ("        max_replication_slots: 10\n", f"        max_replication_slots: 10\n"
         f"        unix_socket_directories: '{root}'\n"),
    ):  # fmt: skip
        assert shipped in text, shipped
        text = text.replace(shipped, here)
    config = root / "patroni.yml"
    config.write_text(text)
    return config


@contextlib.contextmanager
def _cluster(root: Path) -> Iterator[list[_Node]]:
    """etcd, then two Patroni nodes of the shipped configuration, in `root`."""
    client, peer = free_port(), free_port()
    with (root / "etcd.log").open("ab") as sink:
        etcd = subprocess.Popen(
            [
                "etcd", "--name", "etcd", "--data-dir", str(root / "etcd"),
                "--listen-client-urls", f"http://127.0.0.1:{client}",
                "--advertise-client-urls", f"http://127.0.0.1:{client}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", f"etcd=http://127.0.0.1:{peer}",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    nodes = [_Node(root, "pg1", client), _Node(root, "pg2", client)]
    try:
        _until_answered(f"http://127.0.0.1:{client}/health", etcd)
        config = _config(root)
        for node in nodes:
            node.start(config)
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        etcd.terminate()
        etcd.wait(timeout=30)


def _until_answered(url: str, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{url}: its process ended"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer in {seconds} s")


async def _until_leader_and_sync(nodes: list[_Node], seconds: float = 90.0) -> _Node:
    """The leader, once the cluster has one and a synchronous standby."""
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            for node in nodes:
                try:
                    cluster = (await client.get(f"http://127.0.0.1:{node.api}/cluster")).json()
                except (httpx.TransportError, ValueError):
                    continue
                roles = {m["name"]: (m["role"], m["state"]) for m in cluster.get("members", [])}
                leaders = [n for n, (role, _) in roles.items() if role == "leader"]
                synced = [n for n, (role, state) in roles.items() if role == "sync_standby"
                          and state in ("running", "streaming")]  # fmt: skip
                if leaders and synced:
                    return next(n for n in nodes if n.name == leaders[0])
            await asyncio.sleep(0.5)
    logs = "\n".join((n.root / f"{n.name}.log").read_text()[-2000:] for n in nodes)
    raise AssertionError(f"no leader with a synchronous standby in {seconds} s:\n{logs}")
