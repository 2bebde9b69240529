"""Fixtures for the web config tests: a throwaway CA and certificates, and the fixture files
beside them (they name `server.crt`, `ca.crt`... relative to themselves)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from testkit.tls import Certificates, make_certificates

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certificates"))


@pytest.fixture(scope="session")
def web_configs(tmp_path_factory: pytest.TempPathFactory, certificates: Certificates) -> Path:
    """A folder with every fixture file, the certificates and an empty `empty.pem`."""
    folder = tmp_path_factory.mktemp("web_configs")
    for source in [*FIXTURES.glob("*.yml"), *certificates.folder.iterdir()]:
        shutil.copy(source, folder / source.name)
    (folder / "empty.pem").write_text("")
    return folder
