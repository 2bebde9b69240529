"""Loading settings: an optional YAML file, then the environment on top, validated by pydantic.

Every service uses the same rules, so a mistake reads the same everywhere: one line naming the
field and its environment variable, exit code 2, no stack trace.

Every variable can also be given as a file, Docker secrets' convention: `NAME_FILE=/run/secrets/x`
sets NAME to that file's content (one trailing newline dropped), so a secret need not sit in a
command line or in `docker inspect`'s environment. Setting both NAME and NAME_FILE is an error.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ValidationError

EXIT_CONFIG_ERROR = 2
Model = TypeVar("Model", bound=BaseModel)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_UNIT_SECONDS[None] = 1.0


class ConfigError(ValueError):
    """A setting is missing or wrong; the message names it."""


def parse_duration(value: Any) -> float:
    """Seconds from a number or a Prometheus-style string: `500ms`, `5s`, `1m`, `2h`, `7d`."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 5s, 500ms or 1m")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(f"expected a duration like 5s, 500ms or 1m, got {value!r}")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ValueError("must be greater than zero")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def split_listen_address(address: str) -> tuple[str, int]:
    """`host:port` (or `:port`) from `--web.listen-address`; ConfigError when malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"web.listen-address: expected HOST:PORT, got {address!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _check_listen_address(address: str) -> str:
    try:
        split_listen_address(address)
    except ConfigError as exc:
        raise ValueError(str(exc).split(": ", 1)[1]) from None
    return address


# A `HOST:PORT` setting (every service's `listen_address`), checked when the settings load.
ListenAddress = Annotated[str, AfterValidator(_check_listen_address)]


def read_yaml(path: str | Path | None) -> dict[str, Any]:
    """The mapping in a YAML file, `{}` when no path is given."""
    if not path:
        return {}
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"config.file: cannot read {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigError(f"config.file: {path} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config.file: {path} must hold a mapping at the top level")
    return data


FILE_SUFFIX = "_FILE"


def read_secret_file(variable: str, environ: Mapping[str, str], field: str = "") -> str | None:
    """The value of `variable` from `environ`, or from the file `variable_FILE` names; None when
    neither is set. ConfigError naming the field (or the variable) when both are, or when the
    file cannot be read."""
    file_variable = variable + FILE_SUFFIX
    path = environ.get(file_variable)
    if not path:
        return environ.get(variable) or None
    name = f"{field} ({{}})" if field else "{}"
    if environ.get(variable):
        both = name.format(f"{variable}, {file_variable}")
        raise ConfigError(f"{both}: set one of them, not both")
    try:
        return Path(path).read_text().removesuffix("\n").removesuffix("\r")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"{name.format(file_variable)}: cannot read {path}: {reason}") from None


def env_overrides(env_to_field: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """The fields set through environment variables (or their NAME_FILE), keyed by field."""
    found = {field: read_secret_file(var, environ, field) for var, field in env_to_field.items()}
    return {field: value for field, value in found.items() if value}


def export_secret_files(
    variables: Iterable[str], environ: MutableMapping[str, str] | None = None
) -> None:
    """For variables a library reads itself (boto3's AWS_SECRET_ACCESS_KEY, libpq's PGPASSWORD):
    NAME_FILE's content becomes NAME in this process's environment (NAME_FILE is dropped)."""
    environ = os.environ if environ is None else environ
    for variable in variables:
        value = read_secret_file(variable, environ)
        if environ.pop(variable + FILE_SUFFIX, None) and value:
            environ[variable] = value


def validate(model: type[Model], data: Mapping[str, Any]) -> Model:
    """Validate `data` into `model`; raise ConfigError naming the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "config"
        message = error["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{where}: {message}") from None


def load_settings(
    model: type[Model],
    config_file: str | Path | None,
    env_to_field: Mapping[str, str],
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    check: Callable[[Model], None] | None = None,
) -> Model:
    """File < environment < command-line flags, validated into `model`, then `check`ed (rules
    across fields). A ConfigError names the field and, where it has one, its variable."""
    data = read_yaml(config_file)
    data.update(env_overrides(env_to_field, os.environ if environ is None else environ))
    data.update({key: value for key, value in (flags or {}).items() if value is not None})
    try:
        settings = validate(model, data)
        if check is not None:
            check(settings)
    except ConfigError as exc:
        raise with_variable(exc, env_to_field) from None
    return settings


def with_variable(error: ConfigError, env_to_field: Mapping[str, str]) -> ConfigError:
    """`field (VARIABLE): message` for an error about a field set by an environment variable."""
    field, sep, message = str(error).partition(":")
    variable = next((var for var, name in env_to_field.items() if name == field), None)
    return ConfigError(f"{field} ({variable}){sep}{message}") if variable else error


def exit_with_config_error(program: str, error: ConfigError) -> NoReturn:
    """Print a one-line config error and exit with code 2."""
    print(f"{program}: config error: {error}", file=sys.stderr)
    sys.exit(EXIT_CONFIG_ERROR)
