"""A throw-away PostgreSQL cluster for the team-services tests (no tests here).

``initdb`` into a fresh folder under the system temp directory, the server listening on
127.0.0.1 only, on a free port, its unix socket in that folder; local socket connections
are trusted (the superuser ``postgres`` creates roles and databases), TCP connections need a
password (scram-sha-256), like a team's server. ``initdb`` refuses to run as root and the
tests and CI run as root, so every server command then runs as the ``postgres`` system user
(``runuser -u postgres --``); the folder is created in the temp directory itself because
pytest's ``tmp_path`` lives under a root-only folder the ``postgres`` user cannot enter.

Each database in ``databases`` gets a login role of the same name that owns it, with the
cluster's ``password``.

Example:
    >>> with postgres_cluster(databases=("mlflow",)) as pg:  # doctest: +SKIP
    ...     pg.url("mlflow", password=pg.password)  # postgresql://mlflow:...@127.0.0.1:port/mlflow
    ...     pg.sql("mlflow", "select count(*) from pg_tables")
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from helpers.http import free_port

SYSTEM_USER = "postgres"
SUPERUSER = "postgres"


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<major>/bin`` holding ``initdb`` and ``pg_ctl``
    (Debian's layout), else the folder of an ``initdb`` on PATH; None when absent."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for folder in candidates:
        if all((Path(folder) / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    return None


def _as_server_user() -> list[str]:
    """``runuser -u postgres --`` when running as root (initdb refuses root), else nothing."""
    return ["runuser", "-u", SYSTEM_USER, "--"] if os.geteuid() == 0 else []


@dataclass(frozen=True)
class PostgresCluster:
    """A running cluster.

    Attributes:
        bin_dir: the server binaries (``psql`` is taken from there too).
        root: the temporary folder (data directory, socket, log).
        port: the TCP port on 127.0.0.1 (the socket uses the same number).
        password: the password of every role :meth:`create_database` made.
    """

    bin_dir: Path
    root: Path
    port: int
    password: str

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def sql(self, database: str, statement: str) -> list[list[str]]:
        """Run ``statement`` as the superuser through the unix socket; the rows, as text."""
        done = subprocess.run(
            [
                str(self.bin_dir / "psql"),
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-X",
                "-A",
                "-t",
                "-F",
                "\t",
                "-c",
                statement,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql {database}: {statement!r} failed: {done.stderr.strip()}")
        return [line.split("\t") for line in done.stdout.splitlines() if line]

    def create_database(self, name: str) -> None:
        """Login role ``name`` (with :attr:`password`) and database ``name`` it owns."""
        self.sql("postgres", f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{self.password}'")
        self.sql("postgres", f'CREATE DATABASE "{name}" OWNER "{name}"')

    def url(
        self,
        database: str,
        *,
        password: str | None = None,
        user: str | None = None,
        scheme: str = "postgresql",
    ) -> str:
        """``<scheme>://<user>[:password]@127.0.0.1:<port>/<database>`` (TCP); the user is
        the database's own role unless given."""
        secret = f":{password}" if password else ""
        return f"{scheme}://{user or database}{secret}@127.0.0.1:{self.port}/{database}"


def _run(command: list[str], what: str, log: Path | None = None) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        tail = log.read_text()[-2000:] if log is not None and log.is_file() else ""
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr.strip()}\n{tail}")


@contextmanager
def postgres_cluster(
    databases: Sequence[str] = (), bin_dir: Path | None = None
) -> Iterator[PostgresCluster]:
    """Start a throw-away cluster with ``databases`` (each owned by a role of its name);
    stop it and delete its folder afterwards, also when the body raises. Raises
    ``FileNotFoundError`` when the binaries are absent."""
    bin_dir = bin_dir or find_bin_dir()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl) not found")
    root = Path(tempfile.mkdtemp(prefix="matryoshka-pg-"))
    cluster = PostgresCluster(bin_dir, root, free_port(), f"pw-{uuid.uuid4().hex}")
    started = False
    try:
        if os.geteuid() == 0:
            user = pwd.getpwnam(SYSTEM_USER)
            os.chown(root, user.pw_uid, user.pw_gid)
        root.chmod(0o700)
        _run(
            [
                *_as_server_user(),
                str(bin_dir / "initdb"),
                "-D",
                str(cluster.data_dir),
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-instructions",
            ],
            "initdb",
        )
        # Test settings: localhost only, socket in our folder, no durability (throw-away).
        options = (
            f"-c listen_addresses=127.0.0.1 -p {cluster.port} -k {cluster.socket_dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=100"
        )
        _run(
            [
                *_as_server_user(),
                str(bin_dir / "pg_ctl"),
                "-D",
                str(cluster.data_dir),
                "-l",
                str(cluster.log_file),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            "pg_ctl start",
            cluster.log_file,
        )
        started = True
        for name in databases:
            cluster.create_database(name)
        yield cluster
    finally:
        if started:
            subprocess.run(
                [
                    *_as_server_user(),
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(cluster.data_dir),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)
