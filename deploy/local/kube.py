"""A real Kubernetes API server on loopback, for installing the Helm chart without a cluster:
kube-apiserver built from the Go module proxy and Debian's etcd (both from deploy/local/tools.py,
cached under .local/tools/).

It stores, validates and admits objects exactly as a cluster's API server does (OpenAPI
validation, CRDs, Pod Security admission, RBAC), but runs no controllers and no kubelet: a
Deployment is accepted and nothing starts. Standard library only.

    python deploy/local/kube.py up [--port 6443]   # run one in the foreground; prints KUBECONFIG
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

if __package__ in (None, ""):  # run as a script: python deploy/local/kube.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from deploy.local import tools
from deploy.local.stack import StackError, free_port, log, port_open, wait_for

SERVICE_RANGE = "10.96.0.0/16"


@dataclass
class ApiServer:
    """etcd plus kube-apiserver under `home`, on free loopback ports; a token with cluster-admin
    rights (group system:masters) and a kubeconfig for helm."""

    home: Path
    port: int = field(default_factory=free_port)
    etcd_port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False,
                                                       repr=False)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.home / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        """The self-signed serving certificate and its CA, written by kube-apiserver at start."""
        return self.home / "certs" / "apiserver.crt"

    def __enter__(self) -> ApiServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self, timeout: float = 120.0) -> None:
        """Start both and wait until the API server is ready; on any failure (or Ctrl-C) what
        was started is stopped again."""
        self.home.mkdir(parents=True, exist_ok=True)
        etcd, apiserver = tools.etcd(), tools.kube_apiserver()
        try:
            self._start(etcd, apiserver, timeout)
        except BaseException:
            self.stop()
            raise
        log(f"kube-apiserver {tools.KUBE_VERSION} ready on {self.url} "
            f"(KUBECONFIG={self.kubeconfig})")

    def _start(self, etcd: Path, apiserver: Path, timeout: float) -> None:
        peer = f"http://127.0.0.1:{free_port()}"
        self._spawn("etcd", [
            str(etcd), "--name", "nurture", "--data-dir", str(self.home / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"nurture={peer}", "--log-level", "warn"])
        wait_for("etcd", self._etcd_healthy, timeout, self.home / "etcd.log")
        self._write_credentials()
        self._spawn("kube-apiserver", [
            str(apiserver), "--bind-address", "127.0.0.1", "--secure-port", str(self.port),
            "--etcd-servers", f"http://127.0.0.1:{self.etcd_port}",
            "--cert-dir", str(self.home / "certs"),
            "--token-auth-file", str(self.home / "tokens.csv"),
            "--authorization-mode", "RBAC",
            "--service-cluster-ip-range", SERVICE_RANGE,
            "--service-account-issuer", "https://kubernetes.default.svc",
            "--service-account-key-file", str(self.home / "sa.pub"),
            "--service-account-signing-key-file", str(self.home / "sa.key"),
            "-v", "0"])
        wait_for("kube-apiserver", self._ready, timeout, self.home / "kube-apiserver.log")
        self.kubeconfig.write_text(json.dumps(self._kubeconfig(), indent=2))

    def stop(self, timeout: float = 30.0) -> None:
        for proc in reversed(self._procs.values()):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()

    def _spawn(self, name: str, argv: list[str]) -> None:
        with open(self.home / f"{name}.log", "ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self._procs[name] = proc

    def _exited(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise StackError(f"{name} exited with {proc.returncode}; "
                                 f"see {self.home / name}.log")

    def _etcd_healthy(self) -> bool:
        self._exited()
        if not port_open(self.etcd_port):
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.etcd_port}/health",
                                        timeout=2) as resp:
                return bool(json.load(resp).get("health") == "true")
        except (OSError, ValueError):
            return False

    def _ready(self) -> bool:
        self._exited()
        if not (self.ca_file.exists() and port_open(self.port)):
            return False
        try:
            return self.request("GET", "/readyz")[0] == 200
        except OSError:
            return False

    def _write_credentials(self) -> None:
        """A token file naming the admin, and the service-account signing key pair."""
        (self.home / "tokens.csv").write_text(f"{self.token},nurture-admin,0,system:masters\n")
        openssl = shutil.which("openssl")
        if openssl is None:
            raise StackError("openssl is needed for the service-account key: "
                             "apt-get install openssl")
        key, pub = self.home / "sa.key", self.home / "sa.pub"
        for argv in ([openssl, "genrsa", "-out", str(key), "2048"],
                     [openssl, "rsa", "-in", str(key), "-pubout", "-out", str(pub)]):
            proc = subprocess.run(argv, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise StackError(f"{' '.join(argv)} failed: {proc.stderr}")

    def _kubeconfig(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1", "kind": "Config", "current-context": "nurture-local",
            "clusters": [{"name": "nurture-local", "cluster": {
                "server": self.url, "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": "nurture-admin", "user": {"token": self.token}}],
            "contexts": [{"name": "nurture-local", "context": {
                "cluster": "nurture-local", "user": "nurture-admin"}}]}

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, *,
                content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
        """One call to the API; (status, decoded JSON body). HTTP errors are returned, not
        raised: the Status object says why."""
        data = None if body is None else json.dumps(body).encode()
        # the URL is always this server's https:// address
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={  # noqa: S310
            "Authorization": f"Bearer {self.token}", "Content-Type": content_type,
            "Accept": "application/json"})
        context = ssl.create_default_context(cafile=str(self.ca_file))
        try:
            with urllib.request.urlopen(req, context=context, timeout=30) as resp:  # noqa: S310
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        try:
            decoded = json.loads(raw) if raw else {}
        except ValueError:
            decoded = {"text": raw.decode(errors="replace")}
        return status, decoded if isinstance(decoded, dict) else {"items": decoded}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run etcd + kube-apiserver in the foreground (Ctrl-C stops)")
    up.add_argument("--port", type=int, default=6443, help="the API server's port (6443)")
    up.add_argument("--home", type=Path, default=None,
                    help="state folder (default: a temporary one, deleted at exit)")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        home = args.home or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        try:
            server = stack.enter_context(ApiServer(home=home, port=args.port))
        except (StackError, tools.ToolError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"export KUBECONFIG={server.kubeconfig}", flush=True)
        stop = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # after the servers started: not theirs
        signal.sigwait(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
