"""Start PostgreSQL as the postgres user on PGDATA, creating the cluster, its user and database
from POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB on the first start."""

import os
import pwd
import subprocess
import sys
import tempfile
from pathlib import Path


def as_postgres() -> None:
    user = pwd.getpwnam("postgres")
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)


def create(data: Path, user: str, password: str, database: str) -> None:
    with tempfile.NamedTemporaryFile("w", dir="/tmp", delete=False) as pw:
        pw.write(password)
    owner = pwd.getpwnam("postgres")
    os.chown(pw.name, owner.pw_uid, owner.pw_gid)
    subprocess.run(["initdb", "-D", str(data), "-U", user, "--pwfile", pw.name,
                    "--auth-host=scram-sha-256", "--auth-local=trust"],
                   check=True, preexec_fn=as_postgres)
    os.unlink(pw.name)
    with (data / "postgresql.conf").open("a") as conf:
        conf.write("listen_addresses = '*'\n")
    with (data / "pg_hba.conf").open("a") as hba:
        hba.write("host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n")
    if database != "postgres":  # initdb made only postgres (and the templates)
        subprocess.run(["postgres", "--single", "-D", str(data), "postgres"], check=True,
                       input=f'CREATE DATABASE "{database}" OWNER "{user}";\n', text=True,
                       preexec_fn=as_postgres)


def main() -> int:
    data = Path(os.environ["PGDATA"])
    data.mkdir(parents=True, exist_ok=True)
    user = pwd.getpwnam("postgres")
    os.chown(data, user.pw_uid, user.pw_gid)
    data.chmod(0o700)
    Path("/var/run/postgresql").mkdir(parents=True, exist_ok=True)
    os.chown("/var/run/postgresql", user.pw_uid, user.pw_gid)
    if not (data / "PG_VERSION").exists():
        name = os.environ.get("POSTGRES_USER", "postgres")
        create(data, name, os.environ["POSTGRES_PASSWORD"], os.environ.get("POSTGRES_DB", name))
    as_postgres()
    os.execvp("postgres", ["postgres", "-D", str(data)])  # noqa: S606 - the server replaces us
    return 1


if __name__ == "__main__":
    sys.exit(main())
