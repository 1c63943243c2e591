"""Start real services (Orthanc with DICOMweb, Redis) on free loopback ports for tests and benchmarks.

Every service runs in its own working directory (configuration, storage, logs) and is torn down by
``stop()``. Nothing here depends on services already running on the machine.

Usage::

    orthanc = start_orthanc(tmp_path / "orthanc", modalities={"NODE": ("CSPINE", "127.0.0.1", 11112)})
    try:
        requests.get(orthanc.http_url + "/system")
    finally:
        orthanc.stop()
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ORTHANC_BIN = "Orthanc"
ORTHANC_DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
REDIS_BIN = "redis-server"


class ServiceError(RuntimeError):
    """A service did not start (the message holds the tail of its log)."""


_PORT_RANDOM = random.Random(os.urandom(16))
_PORTS_HANDED_OUT: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now, below the kernel's ephemeral range.

    A port the OS hands out for ``bind(0)`` is an ephemeral port, and the OS may hand the same one to the next
    ``bind(0)`` (a server started with ``port=0``) or use it as a client's source port before the service that
    was given it binds it: seen once in CI as a metrics port that was also the node's SCP port. Ports below the
    ephemeral range are never handed out that way; none is returned twice by one process."""
    low = _ephemeral_low()
    for _ in range(200):
        port = _PORT_RANDOM.randrange(20000, max(20001, low))
        if port in _PORTS_HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _PORTS_HANDED_OUT.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # the range is full: let the OS pick
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binary_available(name: str) -> bool:
    """True when ``name`` is an executable on PATH (or in /usr/sbin, where Debian puts Orthanc)."""
    return shutil.which(name) is not None or shutil.which(name, path="/usr/sbin:/usr/local/sbin") is not None


def _which(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise FileNotFoundError(f"{name} is not installed (apt-get install the Debian package)")
    return found


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Orthanc:
    """A running Orthanc (HTTP REST + DICOMweb + DICOM) on loopback."""

    workdir: Path
    http_port: int
    dicom_port: int
    aet: str
    process: subprocess.Popen
    log_path: Path
    modalities: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    auth: tuple[str, str] | None = None
    """Basic authentication (the first of ``RegisteredUsers``)."""

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return self.http_url + "/dicom-web"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def get(self, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("auth", self.auth)
        r = requests.get(self.http_url + path, timeout=kwargs.pop("timeout", 30), **kwargs)
        r.raise_for_status()
        return r

    def instances(self) -> list[str]:
        """Orthanc identifiers of every stored instance."""
        return list(self.get("/instances").json())

    def sop_instance_uids(self) -> set[str]:
        """SOPInstanceUIDs of every stored instance."""
        out = set()
        for oid in self.instances():
            tags = self.get(f"/instances/{oid}/simplified-tags").json()
            out.add(tags["SOPInstanceUID"])
        return out

    def upload(self, path: Path) -> dict:
        """Store one DICOM file through the REST API (POST /instances)."""
        r = requests.post(self.http_url + "/instances", data=Path(path).read_bytes(), timeout=60, auth=self.auth)
        r.raise_for_status()
        return r.json()

    def stop(self) -> None:
        _stop_process(self.process)

    def log(self) -> str:
        return _tail(self.log_path)


def start_orthanc(
    workdir: Path,
    *,
    aet: str = "ORTHANC",
    modalities: dict[str, tuple[str, str, int]] | None = None,
    timeout: float = 60.0,
    extra_config: dict | None = None,
    http_port: int | None = None,
    dicom_port: int | None = None,
) -> Orthanc:
    """Start Orthanc with the DICOMweb plugin, on free loopback ports, storing under ``workdir``.

    ``modalities`` maps a symbolic name to ``(AE title, host, port)`` of peers Orthanc may C-STORE to
    (and accept from). Waits until ``/system`` answers. ``extra_config`` entries override the defaults.
    ``http_port``/``dicom_port`` pin the ports (e.g. to bring back a destination that was down).
    ``extra_config`` with ``AuthenticationEnabled`` and ``RegisteredUsers``: basic authentication (the returned
    ``Orthanc`` uses the first user); with ``DicomTlsEnabled``, ``DicomTlsCertificate``, ``DicomTlsPrivateKey``,
    ``DicomTlsTrustedCertificates``, ``DicomTlsRemoteCertificateRequired``: DICOM TLS on ``DicomPort``. For HTTPS
    put ``start_https_proxy`` in front (Orthanc 1.10's own HTTPS, ``SslEnabled``, crashes its civetweb worker on
    the first request with this machine's OpenSSL 3).
    """
    fixed_ports = http_port is not None or dicom_port is not None
    binary = _which(ORTHANC_BIN)
    if not ORTHANC_DICOMWEB_PLUGIN.exists():
        raise FileNotFoundError(f"{ORTHANC_DICOMWEB_PLUGIN} missing (apt-get install orthanc-dicomweb)")
    workdir = Path(workdir)
    (workdir / "storage").mkdir(parents=True, exist_ok=True)
    (workdir / "index").mkdir(parents=True, exist_ok=True)
    modalities = dict(modalities or {})
    last_error: str = ""
    for _attempt in range(1 if fixed_ports else 3):  # a port picked free may be taken before Orthanc binds it
        if not fixed_ports:
            http_port, dicom_port = free_port(), free_port()
            while dicom_port == http_port:
                dicom_port = free_port()
        http_port = http_port or free_port()
        dicom_port = dicom_port or free_port()
        config = {
            "Name": f"test-orthanc-{aet}",
            "StorageDirectory": str(workdir / "storage"),
            "IndexDirectory": str(workdir / "index"),
            "HttpPort": http_port,
            "DicomPort": dicom_port,
            "DicomAet": aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "SslEnabled": False,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomModalities": {name: [a, h, p] for name, (a, h, p) in modalities.items()},
            "Plugins": [str(ORTHANC_DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "Ssl": False},
            "StableAge": 1,
            "ConcurrentJobs": 2,
            "HttpTimeout": 60,
            "DicomScuTimeout": 30,
            "DicomAssociationCloseDelay": 0,
            "StorageCompression": False,
            "OverwriteInstances": True,
        }
        config.update(extra_config or {})
        users = config.get("RegisteredUsers") if config.get("AuthenticationEnabled") else None
        auth = next(iter(users.items())) if users else None
        config_path = workdir / "orthanc.json"
        config_path.write_text(json.dumps(config, indent=2))
        log_path = workdir / "orthanc.log"
        log_file = open(log_path, "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [binary, str(config_path)], cwd=workdir, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log_file.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                r = requests.get(f"http://127.0.0.1:{http_port}/system", timeout=2, auth=auth)
                if r.ok and _port_open(dicom_port):
                    return Orthanc(workdir, http_port, dicom_port, aet, proc, log_path, modalities, auth)
            except requests.RequestException:
                pass
            time.sleep(0.2)
        _stop_process(proc)
        last_error = _tail(log_path)
    raise ServiceError(f"Orthanc did not start within {timeout} s; log tail:\n{last_error}")


@dataclass
class HttpsProxy:
    """nginx terminating HTTPS on loopback in front of an HTTP service (``url``: ``https://127.0.0.1:port``)."""

    workdir: Path
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def stop(self) -> None:
        _stop_process(self.process)


def start_https_proxy(workdir: Path, upstream: str, certificate: Path, private_key: Path, *,
                      timeout: float = 20.0) -> HttpsProxy:
    """Start nginx on a free loopback port serving HTTPS with ``certificate``/``private_key`` and passing every
    request to ``upstream`` (``http://127.0.0.1:8042``), request bodies unbuffered and unlimited."""
    binary = _which("nginx")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    temps = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    for d in temps:
        (workdir / d).mkdir(exist_ok=True)
    port = free_port()
    user = "user root;\n" if os.geteuid() == 0 else ""
    (workdir / "nginx.conf").write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {workdir}/nginx.pid;\nerror_log {workdir}/error.log;\n"
        "events { worker_connections 64; }\nhttp {\n"
        f"  access_log {workdir}/access.log;\n"
        + "".join(f"  {d}_temp_path {workdir}/{d};\n" for d in temps)
        + f"  server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {certificate};\n"
        f"    ssl_certificate_key {private_key};\n    client_max_body_size 0;\n"
        f"    location / {{\n      proxy_pass {upstream};\n      proxy_request_buffering off;\n"
        "      proxy_set_header Host $host;\n    }\n  }\n}\n")
    proc = subprocess.Popen([binary, "-p", str(workdir), "-c", str(workdir / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if _port_open(port):
            return HttpsProxy(workdir, port, proc)
        time.sleep(0.1)
    _stop_process(proc)
    raise ServiceError(f"nginx did not start within {timeout} s; error log:\n{_tail(workdir / 'error.log')}")


@dataclass
class Redis:
    """A running redis-server on loopback, with no persistence, in its own directory."""

    workdir: Path
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        _stop_process(self.process)


def start_redis(workdir: Path, *, timeout: float = 30.0) -> Redis:
    """Start ``redis-server`` on a free loopback port with its files under ``workdir``."""
    import redis as redis_py

    binary = _which(REDIS_BIN)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    last_error = ""
    for _attempt in range(3):
        port = free_port()
        log_path = workdir / "redis.log"
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", "",
             "--appendonly", "no", "--logfile", str(log_path), "--daemonize", "no", "--protected-mode", "yes"],
            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                if redis_py.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping():
                    return Redis(workdir, port, proc, log_path)
            except redis_py.RedisError:
                pass
            time.sleep(0.1)
        _stop_process(proc)
        last_error = _tail(log_path)
    raise ServiceError(f"redis-server did not start within {timeout} s; log tail:\n{last_error}")


def in_ci() -> bool:
    """True when running under CI (env CI=true/1): a missing service binary is then a failure, not a skip."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}
