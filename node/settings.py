"""One settings object for the node: environment variables (prefix ``CSPINE_``) and an optional file.

Precedence (highest first): keyword arguments, ``CSPINE_*`` environment variables, the file named by
``CSPINE_CONFIG`` (TOML ``.toml``, JSON ``.json`` or YAML ``.yaml``/``.yml`` when PyYAML is present),
then the defaults below. Lists and destinations are JSON in environment variables, e.g.::

    CSPINE_ALLOWED_CALLING_AETS='["ORTHANC","PACS"]'
    CSPINE_DESTINATIONS='[{"name": "pacs", "kind": "dimse", "ae_title": "ORTHANC", "host": "10.0.0.5", "port": 4242},
                          {"name": "archive", "kind": "stow", "url": "http://10.0.0.5:8042/dicom-web"}]'

Times are in seconds, sizes in bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

CONFIG_ENV = "CSPINE_CONFIG"


class DestinationKind(StrEnum):
    """How result objects reach a destination (the ``kind`` of a destination in the configuration)."""

    DIMSE = "dimse"
    """DICOM C-STORE to a Storage SCP (pynetdicom)."""
    STOW = "stow"
    """DICOMweb STOW-RS (dicomweb-client)."""


class Destination(BaseModel):
    """Where result objects go: a DICOM C-STORE SCP (``dimse``) or a DICOMweb STOW-RS service (``stow``)."""

    name: str
    kind: DestinationKind
    ae_title: str = ""
    """Called AE title (dimse)."""
    host: str = ""
    port: int = 0
    url: str = ""
    """DICOMweb base URL (stow), e.g. ``http://orthanc:8042/dicom-web``."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra HTTP headers for STOW-RS (e.g. Authorization): secrets, never written to files (``to_json_file``)."""
    username: str = ""
    password: str = ""
    """HTTP basic authentication for STOW-RS (secret, like ``headers``)."""
    token: str = ""
    """Bearer token for STOW-RS (``Authorization: Bearer <token>``; secret, like ``headers``)."""
    tls: bool = False
    """dimse: DICOM TLS to the destination (a stow destination uses TLS when its URL is ``https://``)."""
    tls_ca_bundle: Path | None = None
    """CA certificates (PEM) the destination's server certificate must chain to; None: the system's CAs."""
    tls_certificate: Path | None = None
    tls_private_key: Path | None = None
    """Our client certificate and its key (PEM) for a destination that requires mutual TLS."""
    tls_server_name: str = ""
    """Name the server certificate must carry (dimse; default ``host``)."""
    timeout_s: float = 60.0
    priors: bool = False
    """Look up the patient's earlier studies here (``node.priors``: QIDO-RS + WADO-RS for stow, C-FIND + C-GET for
    dimse) when the node's own index has none: prior-study comparison and the X-ray/MRI pairing."""
    priors_timeout_s: float = 3.0
    """The longest the prior lookup may take at this destination; past it the study goes on with a note."""

    @model_validator(mode="after")
    def _check(self) -> Destination:
        if self.kind is DestinationKind.DIMSE and not (self.ae_title and self.host and self.port):
            raise ValueError(f"destination {self.name!r}: dimse needs ae_title, host and port")
        if self.kind is DestinationKind.STOW and not self.url:
            raise ValueError(f"destination {self.name!r}: stow needs url")
        if not self.name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"destination name {self.name!r}: letters, digits, - and _ only")
        if self.kind is DestinationKind.DIMSE and (self.username or self.password or self.token):
            raise ValueError(f"destination {self.name!r}: username, password and token are for stow")
        if self.kind is DestinationKind.STOW and self.tls:
            raise ValueError(f"destination {self.name!r}: stow uses TLS when its url is https://; drop tls")
        if self.password and not self.username:
            raise ValueError(f"destination {self.name!r}: password without username")
        if self.token and (self.username or self.password):
            raise ValueError(f"destination {self.name!r}: token or username/password, not both")
        if self.tls_private_key and not self.tls_certificate:
            raise ValueError(f"destination {self.name!r}: tls_private_key without tls_certificate")
        return self


def embedded_broker_dir(spool_dir: Path | str) -> Path:
    """The embedded broker's folder in a spool (``node.broker``; its messages in ``queue``), spelled only here."""
    return Path(spool_dir).resolve() / "broker"


def redact_url(url: str | None) -> str | None:
    """``url`` with the password of its user info replaced by ``***`` (unchanged when it has none)."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _has_secret(d: Destination) -> bool:
    return bool(d.headers or d.password or d.token) or redact_url(d.url) != d.url


class _ConfigFileSource(PydanticBaseSettingsSource):
    """Reads the file named by ``CSPINE_CONFIG`` (TOML, JSON or YAML)."""

    def __init__(self, settings_cls: type[BaseSettings]):
        super().__init__(settings_cls)
        self._data = load_config_file(os.environ.get(CONFIG_ENV))

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def load_config_file(path: str | os.PathLike | None) -> dict[str, Any]:
    """Parse a TOML/JSON/YAML config file into a dict (``{}`` when ``path`` is empty)."""
    if not path:
        return {}
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{CONFIG_ENV}={p}: no such file")
    text = p.read_text()
    if p.suffix == ".toml":
        data = tomllib.loads(text)
    elif p.suffix == ".json":
        data = json.loads(text)
    elif p.suffix in {".yaml", ".yml"}:
        try:
            import yaml
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise RuntimeError("YAML config needs PyYAML (pip install pyyaml), or use TOML/JSON") from e
        data = yaml.safe_load(text) or {}
    else:
        raise ValueError(f"{CONFIG_ENV}={p}: use a .toml, .json or .yaml file")
    if not isinstance(data, dict):
        raise ValueError(f"{p}: the top level must be a table/mapping")
    return data.get("node", data) if isinstance(data.get("node"), dict) else data


def _check_device(v: str) -> str:
    v = v.strip().lower()
    if v in {"auto", "cpu", "cuda"} or (v.startswith("cuda:") and v[5:].isdigit()):
        return v
    raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {v!r}")


MODEL_NAMES: tuple[str, ...] = ("keypoints", "curvature", "upper_cervical", "cord_compression", "mri", "neck_pain")
"""The models a worker runs (``models.registry`` builds each one from its ``ModelSettings``)."""


class ModelSettings(BaseModel):
    """Weights and device of one model."""

    model_config = ConfigDict(extra="forbid")

    weights: Path | None = None
    """A checkpoint in the project's one schema (``models.common.checkpoint``); None: the shipped weights."""
    device: str | None = None
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto``; None: the node's ``device``."""
    enabled: bool = True
    """False: the model is not loaded and its findings are reported as not assessed."""

    @field_validator("device")
    @classmethod
    def _device(cls, v: str | None) -> str | None:
        return v if v is None else _check_device(v)


class NodeSettings(BaseSettings):
    """Every setting of the node (receive, spool, assembly, queue, delivery, operations)."""

    model_config = SettingsConfigDict(env_prefix="CSPINE_", extra="ignore", validate_default=True)

    # Receive (DICOM Storage SCP)
    ae_title: str = "CSPINE"
    host: str = "0.0.0.0"
    """Address the SCP binds to."""
    port: int = 11112
    allowed_calling_aets: list[str] = Field(default_factory=list)
    """Calling AE titles accepted; empty accepts any."""
    allowed_hosts: list[str] = Field(default_factory=list)
    """Peer IP addresses accepted; empty accepts any."""
    max_pdu: int = 131072
    """Maximum PDU size we receive (bytes); 0 means unlimited. A longer P-DATA-TF PDU aborts the association
    before its body is read (``node.pdu_limits``)."""
    max_instance_bytes: int = 1 << 30
    """Longest C-STORE data set we receive (bytes, default 1 GiB); 0 means unlimited. A longer one aborts the
    association as soon as it passes the limit; nothing of it is kept. Data sets are written to disk as they arrive."""
    max_associations: int = 10
    """Concurrent associations, counted once their A-ASSOCIATE-RQ is complete (raw connections do not count)."""
    association_request_timeout_s: float = 5.0
    """A connection must complete its A-ASSOCIATE-RQ within this long after it is accepted, or it is closed (also
    pynetdicom's ACSE/ARTIM timeout)."""
    max_pending_per_host: int = 8
    """Connections from one peer IP address that have not completed their A-ASSOCIATE-RQ yet; more from that
    address are closed at once."""
    network_timeout_s: float = 60.0
    """Idle association timeout, and the longest a read or write on an accepted connection may stall."""
    dimse_timeout_s: float = 60.0

    # DICOM TLS of the SCP (node.tls)
    tls_port: int | None = None
    """A second SCP listener speaking DICOM TLS on this port, beside the plain ``port`` (DICOM's is 2762)."""
    tls_only: bool = False
    """The SCP speaks DICOM TLS on ``port`` and has no plain listener (``tls_port`` must then be unset)."""
    tls_certificate: Path | None = None
    tls_private_key: Path | None = None
    """The SCP's certificate (chain) and key, PEM."""
    tls_ca_bundle: Path | None = None
    """CA certificates (PEM) that sign the certificates peers present."""
    tls_require_peer_certificate: bool = True
    """Mutual TLS: a peer without a certificate signed by a CA of ``tls_ca_bundle`` fails the handshake."""

    # Spool and assembly
    spool_dir: Path = Path("cspine-spool")
    release_grace_s: float = 0.5
    """Room for a second association of the same study after the sender released the last one that brought its
    instances (a later instance still re-triggers the analysis). With ``dispatch_at_release`` the analysis runs
    during it and its results wait for its end; without, the study is dispatched only after it."""
    dispatch_at_release: bool = True
    """Dispatch a study as soon as its sender released its association, and hold the analysis's results (nothing
    written, queued or sent) until ``release_grace_s`` after that release: an instance of the same study arriving
    before they are written (or a second association still sending) sets the analysis aside, and the study is
    dispatched again with all its instances (``node.grace``). The grace then overlaps the analysis instead of
    preceding it. False: dispatch ``release_grace_s`` after the release."""
    stable_age_s: float = 0.0
    """... and at least this long after its last instance (0: the release and its grace decide)."""
    open_association_age_s: float = 60.0
    """Dispatch anyway after this long without new instances, even if a sender keeps its association open."""
    assembly_interval_s: float = 0.5

    # Queue
    broker_url: str | None = None
    """``redis://host:6379/0`` for Celery with Redis; None for the embedded broker under the spool."""
    embedded_worker: bool = True
    """With the embedded broker, ``serve`` starts one worker process itself."""
    task_max_retries: int = 3
    task_retry_backoff_max_s: int = 120
    task_time_limit_s: int = 1800
    analyze_queue: str = "cspine"
    """Celery queue of the analysis tasks. Set it to the GPU queue (e.g. ``cspine.gpu``) where GPU workers exist:
    GPU workers consume only that queue, CPU workers consume both (fallback), see ``docs/node.md``."""
    deliver_queue: str = "cspine"
    """Celery queue of the delivery tasks (network I/O, never GPU work)."""
    worker_queues: list[str] = Field(default_factory=list)
    """Queues a ``cspine-node worker`` consumes (``--queues`` overrides); empty: ``analyze_queue`` and
    ``deliver_queue``."""

    # Inference (workers)
    device: str = "auto"
    """Torch device of the models: ``auto`` (CUDA when visible, else CPU), ``cpu``, ``cuda`` or ``cuda:N``. A CUDA
    device that is not there falls back to the CPU with a logged warning."""
    batch_max_images: int = 8
    """Cross-study batching in a worker running several analyses at once (``--pool threads``): at most this many
    radiographs in one forward pass; 1 turns batching off."""
    batch_wait_ms: float = 20.0
    """How long the first radiograph of a batch waits for others (ms)."""
    torch_threads: int = 1
    """CPU threads of a worker's torch operations (``torch.set_num_threads``); 0: torch's default, one per core.
    One: on a CPU shared with other jobs a forward waits for its slowest, descheduled thread (3-view X-ray pipeline
    here at load average 4: 1.3 s with 1 thread, 5-18 s with 2); raise it on a CPU the worker has to itself."""
    models: dict[str, ModelSettings] = Field(default_factory=dict)
    """Per model (``MODEL_NAMES``): weights path, device, enabled, e.g.
    ``CSPINE_MODELS='{"keypoints": {"weights": "/data/kp.pt", "device": "cuda:1"}}'``. Models not named here use
    the shipped weights on ``device``."""
    model_store: Path | None = None
    """A site's model versions (``models.store``: ``cspine-node models add|promote|rollback``); a model's active
    version there serves unless ``models`` names weights; None or no active version: the shipped weights."""
    worker_status_interval_s: float = 10.0
    """How often a worker writes its status file (``<spool>/run/workers/<hostname>.json``: heartbeat, device,
    model versions, batch sizes), which ``health --role worker`` and the node's /metrics read."""

    # Delivery
    destinations: list[Destination] = Field(default_factory=list)
    deliver_max_retries: int = 200
    """Celery retries per delivery task; with the backoff cap this is hours of trying."""
    deliver_backoff_max_s: int = 60
    deliver_sweep_s: float = 30.0
    """How often ``serve`` re-queues outbox entries whose delivery task was lost."""

    # Patient-level report (X-ray + MRI of one patient, ``node.patients``)
    patient_window_days: float = 90.0
    """Pair an X-ray and an MRI study of the same Patient ID when their study dates lie at most this many
    days apart; 0 turns the patient-level report off."""

    # Radiologists' corrections in (``node.corrections``, docs/corrections.md)
    corrections_dir: Path | None = None
    """The training data made of corrections (COCO keypoints + images); None: ``<spool_dir>/corrections``."""
    corrections_match_mm: float = 5.0
    """A viewer's point or line end moves the node's keypoint nearest to it when that is at most this far (mm)."""
    corrections_pending_max_s: float = 86400.0
    """How long a correction SR waits for the node's X-ray result of its study before it is rejected."""
    corrections_poll_s: float = 0.0
    """Poll the stow destinations with QIDO-RS for correction SRs every this many seconds (0: off)."""
    corrections_poll_window_days: float = 30.0
    """The poller asks about studies the node analysed within this many days."""

    # Operations
    metrics_port: int | None = 9464
    """Prometheus /metrics HTTP port of ``serve`` (None or 0: off)."""
    metrics_host: str = "127.0.0.1"
    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("ae_title")
    @classmethod
    def _aet(cls, v: str) -> str:
        v = v.strip()
        if not v or len(v) > 16:
            raise ValueError("ae_title must be 1..16 characters")
        return v

    @field_validator("allowed_calling_aets")
    @classmethod
    def _calling_aets(cls, v: list[str]) -> list[str]:
        v = [a.strip() for a in v]
        bad = [a for a in v if not a or len(a) > 16 or "\\" in a or not a.isprintable()]
        if bad:
            raise ValueError(f"allowed_calling_aets: AE titles are 1..16 printable characters, no backslash: {bad}")
        return v

    @field_validator("port", "tls_port")
    @classmethod
    def _port(cls, v: int | None) -> int | None:
        if v is not None and not 0 <= v < 65536:
            raise ValueError("port must be 0..65535")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        return _check_device(v)

    @field_validator("models")
    @classmethod
    def _models(cls, v: dict[str, ModelSettings]) -> dict[str, ModelSettings]:
        unknown = sorted(set(v) - set(MODEL_NAMES))
        if unknown:
            raise ValueError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODEL_NAMES)}")
        return v

    def model(self, name: str) -> ModelSettings:
        """The settings of model ``name`` with its device resolved (its own, else the node's)."""
        if name not in MODEL_NAMES:
            raise KeyError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")
        m = self.models.get(name, ModelSettings())
        return m if m.device is not None else m.model_copy(update={"device": self.device})

    @field_validator("analyze_queue", "deliver_queue")
    @classmethod
    def _queue(cls, v: str) -> str:
        v = v.strip()
        if not v or "," in v or any(c.isspace() for c in v):
            raise ValueError(f"queue name {v!r}: non-empty, no commas or spaces")
        return v

    @field_validator("batch_max_images")
    @classmethod
    def _batch(cls, v: int) -> int:
        if v < 1:
            raise ValueError("batch_max_images must be >= 1")
        return v

    @property
    def consumed_queues(self) -> list[str]:
        """The queues a worker takes tasks from (``worker_queues``, else the analysis and delivery queues)."""
        qs = self.worker_queues or [self.analyze_queue, self.deliver_queue]
        return list(dict.fromkeys(q.strip() for q in qs if q.strip()))

    @field_validator("association_request_timeout_s")
    @classmethod
    def _positive_s(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("must be > 0 s")
        return v

    @field_validator("max_pdu", "max_instance_bytes")
    @classmethod
    def _size(cls, v: int) -> int:
        if v != 0 and v < 4096:
            raise ValueError("must be 0 (unlimited) or at least 4096 bytes")
        return v

    @field_validator("max_pending_per_host", "max_associations")
    @classmethod
    def _at_least_one(cls, v: int) -> int:
        if v < 1:
            raise ValueError("must be >= 1")
        return v

    @field_validator("stable_age_s", "open_association_age_s", "release_grace_s")
    @classmethod
    def _nonneg(cls, v: float) -> float:
        if v < 0:
            raise ValueError("must be >= 0 s")
        return v

    @field_validator("corrections_poll_s", "corrections_pending_max_s", "corrections_poll_window_days",
                     "corrections_match_mm")
    @classmethod
    def _corrections_nonneg(cls, v: float) -> float:
        if v < 0:
            raise ValueError("must be >= 0")
        return v

    @property
    def tls_enabled(self) -> bool:
        """The SCP has a TLS listener (``tls_port`` or ``tls_only``)."""
        return self.tls_only or self.tls_port is not None

    @model_validator(mode="after")
    def _tls(self) -> NodeSettings:
        if self.tls_only and self.tls_port is not None:
            raise ValueError("tls_only speaks TLS on port; leave tls_port unset")
        if self.tls_enabled and not (self.tls_certificate and self.tls_private_key):
            raise ValueError("a TLS listener (tls_port or tls_only) needs tls_certificate and tls_private_key")
        if self.tls_enabled and self.tls_require_peer_certificate and not self.tls_ca_bundle:
            raise ValueError("tls_require_peer_certificate needs tls_ca_bundle (or set it to false)")
        return self

    @model_validator(mode="after")
    def _unique_destinations(self) -> NodeSettings:
        names = [d.name for d in self.destinations]
        if len(names) != len(set(names)):
            raise ValueError(f"destination names must be unique: {names}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _ConfigFileSource(settings_cls))

    @property
    def embedded_broker(self) -> bool:
        return not self.broker_url

    def destination(self, name: str) -> Destination:
        for d in self.destinations:
            if d.name == name:
                return d
        raise KeyError(f"no destination named {name!r}")

    def public_dict(self) -> dict[str, Any]:
        """These settings as JSON-able data without secrets: destination headers are left out, passwords in
        destination and broker URLs replaced by ``***``. ``secret_env`` carries what is left out."""
        data = self.model_dump(mode="json")
        for d in data["destinations"]:
            d["headers"] = {}
            d["password"] = d["token"] = ""
            d["url"] = redact_url(d["url"])
        data["broker_url"] = redact_url(data["broker_url"])
        return data

    def secret_env(self) -> dict[str, str]:
        """``CSPINE_*`` environment variables holding what ``public_dict`` leaves out (the whole destination list
        when any destination has headers or a URL password; a broker URL with a password), for a child process
        that reads the rest from ``to_json_file``'s file: environment variables override that file."""
        env: dict[str, str] = {}
        if any(_has_secret(d) for d in self.destinations):
            env["CSPINE_DESTINATIONS"] = json.dumps([d.model_dump(mode="json") for d in self.destinations])
        if self.broker_url and redact_url(self.broker_url) != self.broker_url:
            env["CSPINE_BROKER_URL"] = self.broker_url
        return env

    def to_json_file(self, path: Path) -> Path:
        """Write these settings without secrets (``public_dict``) as JSON, mode 0600 in a 0700 folder; a child
        process reads them back through ``CSPINE_CONFIG`` and its secrets from ``secret_env`` in its environment."""
        path = Path(path)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # a folder we do not own (a mounted volume) keeps its mode
            path.parent.chmod(0o700)
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.public_dict(), f, indent=2)
        os.replace(tmp, path)
        return path
