"""`--web.config.file`: TLS, basic auth and response headers, in exporter-toolkit's format.

The same file Prometheus, Alertmanager and node_exporter read (`promtool check web-config`
accepts what this accepts), loaded once at start; a mistake is a ConfigError naming the field:

    tls_server_config:            # absent: plain HTTP
      cert_file: server.crt       # relative paths are relative to the web config file
      key_file: server.key
      client_ca_file: ca.crt      # clients' certificates are verified against this
      client_auth_type: RequireAndVerifyClientCert
      min_version: TLS12
    basic_auth_users:             # user: bcrypt hash (htpasswd -nBC 10 alice)
      alice: $2y$10$...
    http_server_config:
      headers: {X-Frame-Options: deny}

Differences, each refused with its field named rather than served half-way: Python's `ssl`
cannot ask for a client certificate without verifying it, so `RequestClientCert` and
`RequireAnyClientCert` are refused (use `VerifyClientCertIfGiven` or
`RequireAndVerifyClientCert`), as are a CA file holding no certificate and `min_version` above
`max_version`. `curve_preferences` is checked but OpenSSL offers its own groups (the same four
curves); `http2` is accepted, and the service speaks HTTP/1.1.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from dockpulse.settings import ConfigError

FIELD = "web.config.file"

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Go's names of the TLS 1.0-1.2 suites (crypto/tls) and OpenSSL's for the same suite.
CIPHER_SUITES = {
    "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
# TLS 1.3's suites are not configurable (in Go as in OpenSSL's cipher list): accepted, no effect.
TLS13_SUITES = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
CURVES = {"CurveP256", "CurveP384", "CurveP521", "X25519"}
CLIENT_AUTH = {
    "": ssl.CERT_NONE,
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
UNVERIFIED_CLIENT_AUTH = {"RequestClientCert", "RequireAnyClientCert"}
# The headers exporter-toolkit lets a web config set, with the values it allows (None: any).
HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}
# `$2a$`, `$2b$` or `$2y$`, a two-digit cost, 22 characters of salt and 31 of hash.
BCRYPT_HASH = re.compile(r"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")


def _one_of(names: dict[str, Any] | set[str], what: str) -> Any:
    def check(value: str) -> str:
        if value not in names:
            raise ValueError(f"unknown {what}: {value}")
        return value

    return AfterValidator(check)


def _bcrypt_hash(value: str) -> str:
    match = BCRYPT_HASH.match(value)
    if match is None or not 4 <= int(match.group(1)) <= 31:
        raise ValueError("not a bcrypt hash (make one with: htpasswd -nBC 10 USER)")
    return value


class TLSServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""
    client_auth_type: str = ""
    min_version: Annotated[str, _one_of(TLS_VERSIONS, "TLS version")] = "TLS12"
    max_version: Annotated[str, _one_of(TLS_VERSIONS, "TLS version")] = "TLS13"
    cipher_suites: list[Annotated[str, _one_of(CIPHER_SUITES.keys() | TLS13_SUITES, "cipher")]] = (
        Field(default_factory=list)
    )
    prefer_server_cipher_suites: bool = True
    curve_preferences: list[Annotated[str, _one_of(CURVES, "curve")]] = Field(default_factory=list)

    @property
    def enabled(self) -> bool:
        """exporter-toolkit serves plain HTTP while the section names no file and no policy."""
        return bool(self.cert_file or self.key_file or self.client_ca_file or self.client_auth_type)


class HTTPServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    http2: bool = True  # accepted for compatibility: the services speak HTTP/1.1
    headers: dict[str, str] = Field(default_factory=dict)


class WebConfigFile(BaseModel):
    """The file as written; `load_web_config` turns it into a `WebConfig`."""

    model_config = ConfigDict(extra="forbid")

    tls_server_config: TLSServerConfig = Field(default_factory=TLSServerConfig)
    http_server_config: HTTPServerConfig = Field(default_factory=HTTPServerConfig)
    basic_auth_users: dict[str, Annotated[str, AfterValidator(_bcrypt_hash)]] = Field(
        default_factory=dict
    )


@dataclass(frozen=True)
class WebConfig:
    """What the HTTP server applies: a TLS context (None: plain HTTP), the users' bcrypt
    hashes (empty: no authentication), and headers added to every response."""

    tls: ssl.SSLContext | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def load_web_config(path: str | Path | None) -> WebConfig | None:
    """The web config in `path` (None: none given); ConfigError `web.config.file: FIELD: ...`."""
    if not path:
        return None
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{FIELD}: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{FIELD}: {path} is not valid YAML: {exc}".splitlines()[0]) from None
    try:
        written = WebConfigFile.model_validate(data or {})
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "config"
        message = error["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{FIELD}: {where}: {message}") from None
    headers = _check_headers(written.http_server_config.headers)
    tls = written.tls_server_config
    context = _tls_context(tls, path.parent) if tls.enabled else None
    users = {user: hashed.encode() for user, hashed in written.basic_auth_users.items()}
    return WebConfig(context, users, headers)


def _check_headers(headers: dict[str, str]) -> dict[str, str]:
    for name, value in headers.items():
        if name not in HEADERS:
            raise ConfigError(f"{FIELD}: http_server_config.headers: {name!r} cannot be set")
        allowed = HEADERS[name]
        if allowed is not None and value not in allowed:  # case-sensitive, as in Go
            raise ConfigError(
                f"{FIELD}: http_server_config.headers.{name}: expected one of "
                f"{', '.join(allowed)}, got {value!r}"
            )
    return headers


def _tls_context(tls: TLSServerConfig, folder: Path) -> ssl.SSLContext:
    """A server context from the section; every file is read now, so a bad one stops the start."""
    where = f"{FIELD}: tls_server_config"
    if not tls.cert_file:
        raise ConfigError(f"{where}.cert_file: missing (key_file needs its certificate)")
    if not tls.key_file:
        raise ConfigError(f"{where}.key_file: missing (cert_file needs its private key)")
    if tls.client_auth_type in UNVERIFIED_CLIENT_AUTH:
        raise ConfigError(
            f"{where}.client_auth_type: {tls.client_auth_type} (an unverified client certificate)"
            " is not supported; use VerifyClientCertIfGiven or RequireAndVerifyClientCert"
        )
    if tls.client_auth_type not in CLIENT_AUTH:
        raise ConfigError(f"{where}.client_auth_type: unknown policy {tls.client_auth_type!r}")
    verify_mode = CLIENT_AUTH[tls.client_auth_type]
    if tls.client_ca_file and verify_mode == ssl.CERT_NONE:
        raise ConfigError(f"{where}.client_ca_file: set without a client_auth_type")
    if TLS_VERSIONS[tls.min_version] > TLS_VERSIONS[tls.max_version]:
        raise ConfigError(f"{where}.min_version: {tls.min_version} is above max_version")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    try:
        context.load_cert_chain(folder / tls.cert_file, folder / tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{where}.cert_file: cannot load {tls.cert_file} with {tls.key_file}: {_reason(exc)}"
        ) from None
    context.verify_mode = verify_mode
    if verify_mode != ssl.CERT_NONE:
        _load_client_cas(context, tls.client_ca_file, folder, where)
    suites = [CIPHER_SUITES[name] for name in tls.cipher_suites if name in CIPHER_SUITES]
    if suites:
        try:
            context.set_ciphers(":".join(suites))
        except ssl.SSLError:
            raise ConfigError(
                f"{where}.cipher_suites: none of them is available in this OpenSSL"
            ) from None
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    return context


def _load_client_cas(context: ssl.SSLContext, ca_file: str, folder: Path, where: str) -> None:
    if not ca_file:  # as Go does with no ClientCAs: the system's roots
        context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        return
    try:
        context.load_verify_locations(cafile=folder / ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{where}.client_ca_file: cannot load {ca_file}: {_reason(exc)}"
        ) from None
    if not context.get_ca_certs():
        raise ConfigError(f"{where}.client_ca_file: no certificate in {ca_file}")


def _reason(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return exc.strerror or str(exc)
