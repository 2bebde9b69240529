"""The relay's settings: `--config.file` YAML, then environment variables, then flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from dockpulse.settings import (
    ConfigError,
    Duration,
    ListenAddress,
    load_settings,
    split_listen_address,
)
from dockpulse.web_config import load_web_config

DEFAULT_LISTEN_ADDRESS = "127.0.0.1:9095"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")  # RELAY_STORE: a database, else a file

# Environment variable -> field; the YAML file and the flags use the field names.
ENVIRONMENT = {
    "RELAY_LISTEN_ADDRESS": "listen_address",
    "RELAY_WEB_CONFIG_FILE": "web_config_file",
    "RELAY_AUTH_TOKEN": "auth_token",
    "RELAY_STORE": "store",
    "RELAY_STORE_SYNC": "store_sync",
    "RELAY_LEASE": "lease",
    "RELAY_MAX_BODY_BYTES": "max_body_bytes",
    "OUTBOX_DIR": "outbox_dir",
    "ALERT_LOG": "alert_log",
    "MAIL_BACKEND": "mail_backend",
    "BUFFER_TIMEOUT": "buffer_timeout",
    "ALERT_COOLDOWN": "alert_cooldown",
    "CHECK_INTERVAL": "check_interval",
    "SEND_RESOLVED": "send_resolved",
    "DIGEST_MAX_ALERTS": "digest_max_alerts",
    "RETRY_INITIAL_DELAY": "retry_initial_delay",
    "RETRY_MAX_DELAY": "retry_max_delay",
    "RETRY_BLOCKED_DELAY": "retry_blocked_delay",
    "DELIVERY_TIMEOUT": "delivery_timeout",
    "MAIL_FALLBACK_BACKEND": "mail_fallback_backend",
    "FALLBACK_AFTER": "fallback_after",
    "HEARTBEAT_TIMEOUT": "heartbeat_timeout",
    "BLIND_REPEAT": "blind_repeat",
    "ALERTMANAGER_URL": "alertmanager_url",
    "ALERTMANAGER_USERNAME": "alertmanager_username",
    "ALERTMANAGER_PASSWORD_FILE": "alertmanager_password_file",
    "SILENCE_CHECK_INTERVAL": "silence_check_interval",
    "SILENCE_MAX_DURATION": "silence_max_duration",
    "RELAY_ALLOW_NO_AUTH": "allow_no_auth",
    "RELAY_MAX_CONNECTIONS": "max_connections",
    "RELAY_READ_TIMEOUT": "read_timeout",
    "PROMETHEUS_URL": "prometheus_url",
    "PROMETHEUS_USERNAME": "prometheus_username",
    "PROMETHEUS_PASSWORD": "prometheus_password",
    "PROMETHEUS_CA_FILE": "prometheus_ca_file",
    "GRAFANA_URL": "grafana_url",
    "CHART_WINDOW": "chart_window",
    "CHART_BUDGET": "chart_budget",
    "CHARTS_PER_DIGEST": "charts_per_digest",
    "EXPORTER_URL": "exporter_url",
    "EXPORTER_USERNAME": "exporter_username",
    "EXPORTER_PASSWORD": "exporter_password",
    "CONTEXTS_PER_DIGEST": "contexts_per_digest",
    "SENDER_EMAIL": "sender_email",
    "RECIPIENT_EMAILS": "recipient_emails",
    "AWS_REGION": "aws_region",
    "AWS_ENDPOINT_URL": "aws_endpoint_url",
    "SMTP_HOST": "smtp_host",
    "SMTP_PORT": "smtp_port",
    "SMTP_USERNAME": "smtp_username",
    "SMTP_PASSWORD": "smtp_password",
    "SMTP_STARTTLS": "smtp_starttls",
    "SMTP_TIMEOUT": "smtp_timeout",
}


class RelayConfig(BaseModel):
    """Every setting of `dockpulse-relay`; AWS credentials stay with boto3's own lookup."""

    model_config = ConfigDict(extra="forbid")

    listen_address: ListenAddress = DEFAULT_LISTEN_ADDRESS
    web_config_file: Path | None = None  # TLS and basic auth on every route (web_config.py)
    auth_token: SecretStr | None = None  # when set, POST /webhook needs `Bearer <token>`
    # The durable queue: a SQLite file, or a postgresql:// URL that relay replicas share.
    store: Path | str = Path("data/relay.db")
    store_sync: Literal["normal", "full"] = "normal"  # SQLite: full also survives power loss
    lease: Duration = Field(default=5.0, gt=0)  # replicas: a dead one's mail goes on after this
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    outbox_dir: Path = Path("outbox")
    alert_log: Path = Path("logs/container_alerts.log")
    mail_backend: Literal["ses", "smtp", "outbox"] = "outbox"

    buffer_timeout: Duration = 10.0  # warnings wait this long and go out as one digest
    alert_cooldown: Duration = 300.0  # the same alert is not mailed again within this
    check_interval: Duration = 1.0  # how often the buffer is looked at
    send_resolved: bool = True
    digest_max_alerts: int = Field(default=200, gt=0)  # larger digests are split

    retry_initial_delay: Duration = 2.0
    retry_max_delay: Duration = 300.0
    retry_blocked_delay: Duration = 60.0  # credentials/account refused: retry this slowly
    delivery_timeout: Duration = 20.0  # the most one delivery attempt may take (client timeouts)
    mail_fallback_backend: Literal["ses", "smtp", "outbox"] | None = None
    fallback_after: Duration = 300.0  # primary failing this long: use the fallback

    heartbeat_timeout: Duration = 120.0  # no Watchdog heartbeat this long: "monitoring is blind"
    blind_repeat: Duration = 4 * 3600.0  # "monitoring is blind" again this often while it lasts
    # Silences are read from here (GET /api/v2/silences) and broad or long ones mailed; "" turns
    # it off. Basic auth with the username and the password in the file, when set.
    alertmanager_url: str | None = "http://127.0.0.1:9093"
    alertmanager_username: str | None = None
    alertmanager_password_file: Path | None = None
    silence_check_interval: Duration = 60.0
    silence_max_duration: Duration = 7 * 86400.0  # a longer silence is mailed about
    allow_no_auth: bool = False  # serve the webhook without a token on a non-loopback address
    max_connections: int = Field(default=64, gt=0)  # concurrent HTTP connections
    read_timeout: Duration = 10.0  # a client must send each request within this

    prometheus_url: str = "http://127.0.0.1:9090"
    # Prometheus behind its --web.config.file: basic auth for the graphs' queries, and the CA
    prometheus_username: str | None = None
    prometheus_password: SecretStr | None = None
    prometheus_ca_file: Path | None = None
    grafana_url: str | None = None  # mails link the container-detail dashboard when set
    chart_window: Duration = 3600.0  # the graph in a mail shows this much history
    chart_budget: Duration = 2.0  # the most the graphs may delay one planning pass's mails
    charts_per_digest: int = Field(default=10, gt=0)  # a larger digest has graphs for these
    # Where the exporter an alert's `instance` label names answers for its containers (why a
    # container went down, in the mail; within chart_budget too): `{instance}` is replaced.
    exporter_url: str = "http://{instance}"
    exporter_username: str | None = None  # the exporter behind its --web.config.file
    exporter_password: SecretStr | None = None
    contexts_per_digest: int = Field(default=5, gt=0)  # a larger digest has contexts for these
    sender_email: str | None = None
    recipient_emails: list[str] = Field(default_factory=list)
    aws_region: str | None = None
    aws_endpoint_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, gt=0, lt=65536)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_timeout: Duration = 10.0

    @field_validator("store", mode="before")
    @classmethod
    def _store(cls, value: object) -> object:
        if isinstance(value, str) and value.startswith(POSTGRES_SCHEMES):
            return value
        return Path(value) if isinstance(value, str) else value

    @field_validator("recipient_emails", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("recipient_emails")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            _check_address(address)
        return value

    @field_validator("sender_email")
    @classmethod
    def _sender(cls, value: str | None) -> str | None:
        return None if value is None else _check_address(value)

    @field_validator("prometheus_url", "aws_endpoint_url", "grafana_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)

    @field_validator("alertmanager_url", mode="before")
    @classmethod
    def _alertmanager_url(cls, value: object) -> object:
        return None if value in ("", None) else _http_url(str(value))

    @field_validator("alertmanager_password_file")
    @classmethod
    def _password_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("exporter_url")
    @classmethod
    def _exporter_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or "{instance}" not in value:
            raise ValueError(f"expected an http(s):// URL with {{instance}} in it, got {value!r}")
        return value.rstrip("/")

    def alertmanager_auth(self) -> tuple[str, str] | None:
        """Basic-auth credentials for Alertmanager (the password file read now), or None."""
        if self.alertmanager_username is None:
            return None
        password = ""
        if self.alertmanager_password_file is not None:
            password = self.alertmanager_password_file.read_text().rstrip("\r\n")
        return self.alertmanager_username, password

    @property
    def prometheus_auth(self) -> tuple[str, str] | None:
        return _basic_auth(self.prometheus_username, self.prometheus_password)

    @property
    def exporter_auth(self) -> tuple[str, str] | None:
        return _basic_auth(self.exporter_username, self.exporter_password)

    @property
    def prometheus_verify(self) -> bool | str:
        return str(self.prometheus_ca_file) if self.prometheus_ca_file else True

    @property
    def sender(self) -> str:
        return self.sender_email or "dockpulse-relay@localhost"

    @property
    def recipients(self) -> list[str]:
        return self.recipient_emails or ["operators@localhost"]


def _basic_auth(username: str | None, password: SecretStr | None) -> tuple[str, str] | None:
    """(user, password) for requests, or None without a user."""
    if username is None:
        return None
    return username, password.get_secret_value() if password else ""


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def _check_address(address: str) -> str:
    local, at, domain = address.rpartition("@")
    if not at or not local or ("." not in domain and domain != "localhost"):
        raise ValueError(f"not an e-mail address: {address!r}")
    return address


LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}


def check_backend(config: RelayConfig) -> None:
    """The settings the chosen mail backends cannot do without; no open webhook by accident."""
    for setting in ("mail_backend", "mail_fallback_backend"):
        backend = getattr(config, setting)
        required = {
            "ses": ("sender_email", "recipient_emails", "aws_region"),
            "smtp": ("sender_email", "recipient_emails", "smtp_host"),
        }.get(backend, ())
        for field in required:
            if not getattr(config, field):
                raise ConfigError(f"{field}: required when {setting} is {backend}")
    if config.alertmanager_password_file is not None and config.alertmanager_username is None:
        raise ConfigError(
            "alertmanager_username: required when alertmanager_password_file is set "
            "(ALERTMANAGER_USERNAME)"
        )
    check_authentication(config)


def check_authentication(config: RelayConfig) -> None:
    """A bearer token or the web config's basic-auth users, not both (they are the same
    `Authorization` header), and one of them unless on loopback or told otherwise."""
    web_config = load_web_config(config.web_config_file)
    basic_auth = web_config is not None and bool(web_config.users)
    if basic_auth and config.auth_token is not None:
        raise ConfigError(
            "auth_token: not with basic_auth_users in web.config.file (both use the "
            "Authorization header); Alertmanager then sends basic_auth to the webhook"
        )
    host, _ = split_listen_address(config.listen_address)
    unauthenticated = not basic_auth and config.auth_token is None
    if unauthenticated and not config.allow_no_auth and host not in LOOPBACK_HOSTS:
        raise ConfigError(
            f"auth_token: required when listening on {host} (not loopback only); "
            "set RELAY_ALLOW_NO_AUTH=true to serve the webhook without a token"
        )


def load_config(config_file: str | None, flags: dict[str, object]) -> RelayConfig:
    """Load and check the settings; errors name the field and its environment variable."""
    try:
        config = load_settings(RelayConfig, config_file, ENVIRONMENT, flags)
        check_backend(config)
    except ConfigError as exc:
        field = str(exc).split(":", 1)[0]
        variable = next((var for var, name in ENVIRONMENT.items() if name == field), None)
        if variable is None:
            raise
        raise ConfigError(f"{field} ({variable}){str(exc)[len(field) :]}") from None
    return config
