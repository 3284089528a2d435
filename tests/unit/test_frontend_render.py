"""``hpcportal config render-frontend``: the rendered nginx and Apache files pass the
servers' own checks (Debian's ``nginx -t`` and ``apache2 -t``) and say what the portal
needs; bad values are refused before anything is written."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hpcportal.cli.main import app
from hpcportal.config import Settings
from hpcportal.services.operations.frontend import (
    FrontendError,
    FrontendOptions,
    body_limits,
    render,
)
from tests.frontends import apache_argv, apache_main, nginx_argv, nginx_main, self_signed
from tests.integration.portal_server import free_port

SETTINGS = Settings(upload_max_bytes=5 * 1024**2, upload_max_files=3, tus_max_bytes=7 * 1024**3)


def _options(tmp_path: Path) -> FrontendOptions:
    cert, key = self_signed(tmp_path)
    return FrontendOptions(
        server_name="portal.test",
        cert=cert,
        key=key,
        upstream=f"127.0.0.1:{free_port()}",
        listen=f"127.0.0.1:{free_port()}",
        redirect_from=f"127.0.0.1:{free_port()}",
    )


@pytest.mark.skipif(shutil.which("nginx") is None, reason="Debian's nginx (scripts/setup.sh)")
def test_nginx_accepts_the_rendered_site(tmp_path: Path) -> None:
    options = _options(tmp_path)
    site = tmp_path / "hpcportal.conf"
    site.write_text(render("nginx", options, SETTINGS))
    check = subprocess.run(
        [*nginx_argv(nginx_main(site, tmp_path), tmp_path), "-t"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    assert "test is successful" in check.stderr
    text = site.read_text()
    assert f"listen {options.listen} ssl http2;" in text
    assert f"listen {options.redirect_from};" in text
    assert "proxy_set_header X-Forwarded-For   $remote_addr;" in text
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in text
    assert "proxy_set_header Upgrade           $http_upgrade;" in text
    stream = text.split("location ~ ^/api/v1/jobs/[^/]+/output/stream$ {")[1].split("}")[0]
    assert "proxy_buffering off;" in stream
    limits = body_limits(SETTINGS)
    assert limits["uploads"] > 3 * 5 * 1024**2 and limits["tus"] > 7 * 1024**3
    uploads = text.split("location = /api/v1/uploads {")[1].split("}")[0]
    assert f"client_max_body_size {limits['uploads']};" in uploads
    tus = text.split("location /api/v1/uploads/tus {")[1].split("}")[0]
    assert f"client_max_body_size {limits['tus']};" in tus
    for path in ("^/api/v1/ws$", "^/api/v1/terminal/sessions/[^/]+/ws$", "/node/"):
        assert path in text


@pytest.mark.skipif(shutil.which("apache2") is None, reason="Debian's apache2 (scripts/setup.sh)")
def test_apache_accepts_the_rendered_site(tmp_path: Path) -> None:
    options = _options(tmp_path)
    site = tmp_path / "hpcportal-apache.conf"
    site.write_text(render("apache", options, SETTINGS))
    check = subprocess.run(
        [*apache_argv(apache_main(site, tmp_path)), "-t"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    assert "Syntax OK" in check.stderr
    text = site.read_text()
    assert "Protocols h2 http/1.1" in text
    assert f"\nListen {options.listen}\n" in text and f"\nListen {options.redirect_from}\n" in text
    assert "upgrade=websocket" in text
    assert "RequestHeader unset X-Forwarded-For early" in text
    assert 'RequestHeader set X-Forwarded-Proto "https"' in text
    assert "flushpackets=on" in text.split("ProxyPassMatch")[1].split("\n")[0]
    assert f"LimitRequestBody {body_limits(SETTINGS)['uploads']}" in text


def test_a_broken_site_fails_the_check(tmp_path: Path) -> None:
    """The check above can fail: nginx refuses a site whose certificate is missing."""
    options = _options(tmp_path)
    site = tmp_path / "hpcportal.conf"
    site.write_text(render("nginx", options, SETTINGS))
    options.cert.unlink()
    check = subprocess.run(
        [*nginx_argv(nginx_main(site, tmp_path), tmp_path), "-t"], capture_output=True, text=True
    )
    assert check.returncode != 0 and "portal.crt" in check.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"server_name": "portal.test; evil"}, "--server-name"),
        ({"cert": Path("relative.pem")}, "--cert"),
        ({"key": Path("/etc/ssl/my key.pem")}, "--key"),
        ({"upstream": "8080"}, "--upstream"),
        ({"listen": "127.0.0.1:99999"}, "--listen"),
        ({"redirect_from": "eighty"}, "--redirect-from"),
    ],
)
def test_bad_values_are_refused(change: dict[str, object], message: str) -> None:
    values: dict[str, object] = {
        "server_name": "portal.test",
        "cert": Path("/etc/ssl/p.pem"),
        "key": Path("/etc/ssl/p.key"),
        **change,
    }
    with pytest.raises(FrontendError, match=message):
        render("nginx", FrontendOptions(**values), SETTINGS)  # type: ignore[arg-type]


def test_cli_renders_and_refuses(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    args = ["config", "render-frontend", "--server-name", "portal.test"]
    args += ["--cert", str(cert), "--key", str(key)]
    apache = CliRunner().invoke(app, [*args, "--kind", "apache", "--redirect-from", ""])
    assert apache.exit_code == 0, apache.output
    assert "<VirtualHost *:443>" in apache.output and "Redirect permanent" not in apache.output
    assert "\nListen " not in apache.output, "Debian's ports.conf listens on 443 already"
    target = tmp_path / "site.conf"
    nginx = CliRunner().invoke(app, [*args, "--upstream", "127.0.0.1:9000", "-o", str(target)])
    assert nginx.exit_code == 0 and "server 127.0.0.1:9000;" in target.read_text()
    bad = CliRunner().invoke(app, [*args, "--kind", "caddy"])
    assert bad.exit_code == 2 and "nginx or apache" in bad.output
    relative = CliRunner().invoke(app, [*args, "--upstream", "localhost"])
    assert relative.exit_code == 2 and "--upstream" in relative.output
    assert "Traceback" not in bad.output + relative.output
