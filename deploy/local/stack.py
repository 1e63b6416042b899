"""Local infrastructure for development and tests: a single-node KRaft Kafka broker and a private
PostgreSQL cluster, both on loopback, both owned by this project (no Docker).

Standard library only, so it runs before the virtualenv exists. Used by `make run` / `make stop` /
`make clean` and by the test suite (tests/conftest.py), which starts its own pair on free ports.

    python deploy/local/stack.py up        # start (or reuse) broker + database, print env exports
    python deploy/local/stack.py status
    python deploy/local/stack.py down      # stop both, keep data
    python deploy/local/stack.py clean     # stop both and delete their data

Where KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL are set, the matching local server is not started.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import glob
import hashlib
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = ROOT / ".local"
POM = ROOT / "deploy" / "local" / "pom.xml"


class StackError(RuntimeError):
    """A local server could not be prepared, started or stopped; the message says what to do."""


def log(msg: str) -> None:
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pid(path: Path, expect: str | None = None) -> int | None:
    """The live pid recorded in `path`; with `expect`, only if that process's command line
    contains it (after a reboot the number may belong to something else)."""
    try:
        pid = int(path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    if not pid_alive(pid):
        return None
    if expect is not None:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        if expect.encode() not in cmdline:
            return None
    return pid


def wait_for(what: str, check: object, timeout: float, logfile: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    tail = ""
    if logfile and logfile.exists():
        tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-30:])
    raise StackError(f"{what} not ready after {timeout:.0f}s. Last log lines ({logfile}):\n{tail}")


# --------------------------------------------------------------------------------------------
# Kafka
# --------------------------------------------------------------------------------------------

def kafka_libs(state_dir: Path = DEFAULT_STATE_DIR) -> Path:
    """Fetch the broker jars from Maven Central once (deploy/local/pom.xml) and return their dir."""
    libs = state_dir / "kafka" / "libs"
    stamp = libs / ".pom.sha256"
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()
    have_jars = bool(glob.glob(str(libs / "kafka_2.13-*.jar")))
    if have_jars and stamp.exists() and stamp.read_text() == digest:
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven (mvn) is needed to fetch the Kafka jars: apt-get install maven")
    if shutil.which("java") is None:
        raise StackError("Java 17+ is needed to run Kafka: apt-get install openjdk-17-jre-headless")
    log(f"fetching Kafka broker jars from Maven Central into {libs} ...")
    shutil.rmtree(libs, ignore_errors=True)
    libs.mkdir(parents=True)
    cmd = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
           f"-DoutputDirectory={libs}", "-DincludeScope=runtime"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr)[-6000:]
        raise StackError(f"mvn failed ({proc.returncode}):\n{output}")
    stamp.write_text(digest)
    return libs


LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = warn
logger.apache.name = org.apache.kafka
logger.apache.level = warn
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = info
"""


@dataclass
class Kafka:
    """One single-node KRaft broker (broker + controller in one JVM) listening on 127.0.0.1."""

    home: Path
    port: int
    libs: Path
    heap_mb: int = 512
    partitions: int = 3
    # The JVM we started, kept so it is reaped (and not reported as leaked) when stopped.
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pidfile(self) -> Path:
        return self.home / "kafka.pid"

    @property
    def logfile(self) -> Path:
        return self.home / "kafka.log"

    def _write_config(self) -> Path:
        """(Re)write the broker config. The controller port is chosen once and kept, so a broker
        restarted on another KAFKA_PORT keeps its quorum."""
        saved = self.home / "controller.port"
        ctrl = int(saved.read_text()) if saved.exists() else free_port()
        saved.write_text(str(ctrl))
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{ctrl}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{ctrl}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.home / "data"),
            "num.partitions": str(self.partitions),
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "log.retention.hours": "168",
        }
        cfg = self.home / "server.properties"
        cfg.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.home / "log4j2.properties").write_text(LOG4J2)
        return cfg

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            "java", f"-Xms{self.heap_mb}m", f"-Xmx{self.heap_mb}m", "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            "-cp", f"{self.libs}/*", main, *args,
        ]

    def running(self) -> bool:
        return read_pid(self.pidfile, "kafka.Kafka") is not None and port_open(self.port)

    def start(self, timeout: float = 90.0) -> None:
        if self.running():
            log(f"Kafka already running on {self.bootstrap}")
            return
        self.home.mkdir(parents=True, exist_ok=True)
        cfg = self._write_config()
        if not (self.home / "data" / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            proc = subprocess.run(
                # "=" form: a random id may start with "-", which would read as an option
                self._java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                           f"--config={cfg}"),
                capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise StackError(f"formatting Kafka storage failed:\n{proc.stdout}{proc.stderr}")
        if port_open(self.port):
            raise StackError(f"port {self.port} is taken by another process; set KAFKA_PORT")
        log(f"starting Kafka on {self.bootstrap} (log: {self.logfile})")
        mark = self.logfile.stat().st_size if self.logfile.exists() else 0
        with open(self.logfile, "ab") as out:
            proc = subprocess.Popen(self._java("kafka.Kafka", str(cfg)), stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self._proc = proc
        self.pidfile.write_text(str(proc.pid))

        def started() -> bool:
            if proc.poll() is not None:
                raise StackError(f"Kafka exited with {proc.returncode}; see {self.logfile}")
            with open(self.logfile, "rb") as f:
                f.seek(mark)
                return b"Kafka Server started" in f.read() and port_open(self.port)

        wait_for("Kafka", started, timeout, self.logfile)

    def stop(self, timeout: float = 30.0) -> None:
        pid = read_pid(self.pidfile, "kafka.Kafka")
        if pid is None:
            return
        log(f"stopping Kafka (pid {pid})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.2)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _reap(pid)
        if self._proc is not None:
            self._proc.wait()
            self._proc = None
        self.pidfile.unlink(missing_ok=True)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------

def pg_bindir() -> Path:
    env = os.environ.get("PG_BINDIR")
    candidates = [Path(env)] if env else []
    candidates += sorted((Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
                         key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                         reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).resolve().parent)
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    raise StackError("PostgreSQL server binaries not found (initdb, pg_ctl): "
                     "apt-get install postgresql, or set PG_BINDIR, or set DATABASE_URL")


@dataclass
class Postgres:
    """A private PostgreSQL cluster on 127.0.0.1 with a `nurture` superuser and database.

    PostgreSQL refuses to run as root; when we are root the cluster runs as the `postgres` user and
    lives under /tmp (a path that user can reach even when the checkout is under /root)."""

    home: Path
    port: int
    user: str = "nurture"
    database: str = "nurture"

    @property
    def as_root(self) -> bool:
        return os.geteuid() == 0

    @property
    def datadir(self) -> Path:
        if self.as_root:
            key = hashlib.sha256(str(self.home.resolve()).encode()).hexdigest()[:12]
            return Path("/tmp") / f"nurture-pg-{key}"
        return self.home / "pgdata"

    @property
    def logfile(self) -> Path:
        return self.datadir.parent / f"{self.datadir.name}.log"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        argv = list(cmd)
        if self.as_root:
            try:
                pwd.getpwnam("postgres")
            except KeyError as exc:
                raise StackError("running as root needs the 'postgres' system user "
                                 "(created by Debian's postgresql package)") from exc
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL)

    def running(self) -> bool:
        pid = self.datadir / "postmaster.pid"
        return pid.exists() and read_pid(pid) is not None and port_open(self.port)

    def start(self, timeout: float = 60.0) -> None:
        if self.running():
            log(f"PostgreSQL already running on 127.0.0.1:{self.port}")
            return
        bindir = pg_bindir()
        self.home.mkdir(parents=True, exist_ok=True)
        if not (self.datadir / "PG_VERSION").exists():
            self.datadir.mkdir(parents=True, exist_ok=True)
            if self.as_root:
                shutil.chown(self.datadir, "postgres", "postgres")
            proc = self._run(str(bindir / "initdb"), "-D", str(self.datadir), "-U", self.user,
                             "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-instructions")
            if proc.returncode != 0:
                raise StackError(f"initdb failed:\n{proc.stdout}{proc.stderr}")
        # Throwaway development data: trade durability for speed.
        conf = (f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\nfsync = off\nsynchronous_commit = off\n"
                "full_page_writes = off\nmax_connections = 200\n")
        auto = self.datadir / "postgresql.auto.conf"
        self._run("sh", "-c", f"printf %s \"$0\" > {shlex.quote(str(auto))}", conf)
        if port_open(self.port):
            raise StackError(f"port {self.port} is taken by another process; set PG_PORT")
        log(f"starting PostgreSQL on 127.0.0.1:{self.port} (log: {self.logfile})")
        if self.as_root and not self.logfile.exists():
            self.logfile.touch()
            shutil.chown(self.logfile, "postgres", "postgres")
        proc = self._run(str(bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.logfile),
                         "-w", "-t", str(int(timeout)), "start")
        if proc.returncode != 0:
            raise StackError(f"pg_ctl start failed:\n{proc.stdout}{proc.stderr}\n"
                             f"see {self.logfile}")
        self._ensure_database(bindir)

    def _ensure_database(self, bindir: Path) -> None:
        proc = self._run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                         "-U", self.user, self.database)
        if proc.returncode != 0 and "already exists" not in proc.stderr:
            raise StackError(f"createdb failed:\n{proc.stderr}")

    def stop(self) -> None:
        if not (self.datadir / "postmaster.pid").exists():
            return
        log("stopping PostgreSQL")
        proc = self._run(str(pg_bindir() / "pg_ctl"), "-D", str(self.datadir), "-m", "fast",
                         "-w", "stop")
        if proc.returncode != 0 and "not running" not in proc.stderr + proc.stdout:
            raise StackError(f"pg_ctl stop failed:\n{proc.stdout}{proc.stderr}")

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.datadir, ignore_errors=True)
        self.logfile.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def servers(args: argparse.Namespace) -> tuple[Kafka | None, Postgres | None]:
    state = Path(args.state_dir)
    kafka = None
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        libs = kafka_libs(DEFAULT_STATE_DIR) if args.command == "up" else \
            DEFAULT_STATE_DIR / "kafka" / "libs"
        kafka = Kafka(home=state / "kafka" / "broker", port=args.kafka_port, libs=libs)
    pg = None
    if not os.environ.get("DATABASE_URL"):
        pg = Postgres(home=state / "postgres", port=args.pg_port)
    return kafka, pg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="stack.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status", "clean", "env", "jars"])
    parser.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR),
                        help="where data, logs and pid files live (default: %(default)s)")
    parser.add_argument("--kafka-port", type=int, default=int(os.environ.get("KAFKA_PORT", 9092)),
                        help="broker port on 127.0.0.1 (env KAFKA_PORT, default %(default)s)")
    parser.add_argument("--pg-port", type=int, default=int(os.environ.get("PG_PORT", 55432)),
                        help="PostgreSQL port on 127.0.0.1 (env PG_PORT, default %(default)s)")
    args = parser.parse_args(argv)
    try:
        if args.command == "jars":
            kafka_libs(DEFAULT_STATE_DIR)
            return 0
        kafka, pg = servers(args)
        if args.command == "up":
            if kafka:
                kafka.start()
            if pg:
                pg.start()
        elif args.command in ("down", "clean"):
            if kafka:
                kafka.stop()
            if pg:
                pg.destroy() if args.command == "clean" else pg.stop()
            if args.command == "clean" and kafka:
                shutil.rmtree(kafka.home, ignore_errors=True)
        elif args.command == "status":
            if kafka is None:
                print(f"kafka: external ({os.environ['KAFKA_BOOTSTRAP_SERVERS']})")
            else:
                print(f"kafka: {'running on ' + kafka.bootstrap if kafka.running() else 'stopped'}")
            if pg is None:
                print("postgres: external (DATABASE_URL)")
            else:
                print(f"postgres: {'running on ' + pg.url if pg.running() else 'stopped'}")
        if args.command in ("up", "env"):
            bootstrap = kafka.bootstrap if kafka else os.environ["KAFKA_BOOTSTRAP_SERVERS"]
            url = pg.url if pg else os.environ["DATABASE_URL"]
            print(f"export KAFKA_BOOTSTRAP_SERVERS={bootstrap}")
            print(f"export DATABASE_URL={url}")
    except StackError as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
