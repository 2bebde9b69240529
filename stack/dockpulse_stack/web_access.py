"""Prometheus and Alertmanager behind their own `--web.config.file`, and `dockpulse reload`.

The demo gives each of them one basic-auth user, `dockpulse`, whose password is one of the
demo's secrets (demo_secrets.py). `write_web_configs` writes, into `.demo/web/`, each server's
web config (the bcrypt hash only) and the password file its clients read (Prometheus for
alerting and its self-scrape, the relay, Grafana, `dockpulse reload`): files, never a command
line. `reload` is the one step after editing a rule: `promtool check rules` (and `amtool
check-config`) first, so a broken edit is reported in one line and the running rules stay; then
`POST /-/reload` to each with its credentials.
"""

from __future__ import annotations

import base64
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import requests
import yaml

from dockpulse_stack.errors import StackError

USER = "dockpulse"
BCRYPT_COST = 10  # htpasswd -B's default: ~50 ms a check, once per client thanks to the cache
# The demo secret holding each server's password, and the file names under .demo/web/.
SERVERS = {
    "prometheus": "PROMETHEUS_PASSWORD",
    "alertmanager": "ALERTMANAGER_PASSWORD",
    "exporter": "EXPORTER_PASSWORD",
}


@dataclass(frozen=True)
class WebAccess:
    """Where one server is, and the credentials its clients use."""

    name: str
    url: str
    password_file: Path

    def auth(self) -> tuple[str, str] | None:
        """The credentials; None while the server has none (a stack without web configs)."""
        if not self.password_file.exists():
            return None
        return USER, self.password_file.read_text().strip()


def web_config(password: str, cost: int = BCRYPT_COST) -> dict[str, object]:
    """A web config with one user, `dockpulse`, whose password is `password`."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()
    return {"basic_auth_users": {USER: hashed}}


def write_web_configs(folder: Path, secret_values: dict[str, str]) -> dict[str, Path]:
    """`<server>-web.yml`, `<server>_password` and `<server>_basic_auth` (the `Authorization:
    Basic` value the health checks read with `cat`, in BusyBox's wget as in GNU wget, never
    from a command line of their own) in `folder` for each server; their paths by name
    (`prometheus-web`, `prometheus_password`, `prometheus_basic_auth`, ...).
    Readable by the containers' users (the folder itself is the demo's, 0700); files whose
    password is unchanged are left alone."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for server, secret in SERVERS.items():
        password = secret_values[secret]
        password_file = folder / f"{server}_password"
        config_file = folder / f"{server}-web.yml"
        basic_auth = folder / f"{server}_basic_auth"
        unchanged = password_file.exists() and password_file.read_text().strip() == password
        if not (unchanged and config_file.exists() and basic_auth.exists()):
            config_file.write_text(yaml.safe_dump(web_config(password)))
            password_file.write_text(password + "\n")
            basic_auth.write_text(base64.b64encode(f"{USER}:{password}".encode()).decode())
        for path in (config_file, password_file, basic_auth):
            path.chmod(0o644)
        paths[f"{server}-web"], paths[f"{server}_password"] = config_file, password_file
        paths[f"{server}_basic_auth"] = basic_auth
    return paths


def write_users_web_configs(folder: Path) -> list[Path]:
    """`dockpulse web-config`: write_web_configs for the users' compose file, each password
    the one already in `folder` or a new one; the files written."""
    known = {}
    for server, secret in SERVERS.items():
        password_file = folder / f"{server}_password"
        existing = password_file.read_text().strip() if password_file.exists() else ""
        known[secret] = existing or secrets.token_urlsafe(24)
    return sorted(write_web_configs(folder, known).values())


def _first_problem(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    problems = [line for line in lines if "FAILED" in line or "error" in line.lower()]
    return (problems or lines or ["no output"])[-1]


def check_rules(rule_files: list[Path], promtool: str | None = None) -> None:
    """`promtool check rules` over `rule_files`; StackError with its first complaint."""
    promtool = promtool or shutil.which("promtool")
    if promtool is None:
        raise StackError("promtool is not installed (apt-get install prometheus)")
    result = subprocess.run(
        [promtool, "check", "rules", *map(str, rule_files)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise StackError(
            "the rules do not load, nothing was reloaded: "
            + _first_problem(result.stdout + result.stderr)
        )


def check_alertmanager_config(config_file: Path, amtool: str | None = None) -> None:
    amtool = amtool or shutil.which("amtool") or shutil.which("prometheus-alertmanager-amtool")
    if amtool is None:
        return  # Alertmanager itself refuses a broken file on reload and keeps the old one
    result = subprocess.run(
        [amtool, "check-config", str(config_file)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise StackError(
            f"{config_file.name} does not load, nothing was reloaded: "
            + _first_problem(result.stdout + result.stderr)
        )


def post_reload(server: WebAccess, timeout: float = 30.0) -> None:
    """`POST /-/reload` with the server's credentials; StackError naming what refused it."""
    try:
        answer = requests.post(f"{server.url}/-/reload", auth=server.auth(), timeout=timeout)
    except requests.RequestException as exc:
        raise StackError(
            f"{server.name} at {server.url} did not answer the reload: {exc}"
        ) from None
    if answer.status_code != 200:
        detail = answer.text.strip().splitlines()[0] if answer.text.strip() else ""
        raise StackError(
            f"{server.name} at {server.url} refused the reload: {answer.status_code} {detail}"
        )


def reload(
    rule_files: list[Path], alertmanager_config: Path, servers: list[WebAccess]
) -> list[str]:
    """Check, then reload every server; one line per server reloaded."""
    check_rules(rule_files)
    check_alertmanager_config(alertmanager_config)
    done = []
    for server in servers:
        post_reload(server)
        done.append(f"{server.name} reloaded ({server.url})")
    return done
