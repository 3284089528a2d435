"""Debian's nginx and Apache around a rendered front-end file, for tests.

The rendered file is a site file (what an admin puts in sites-available); these
wrap it in a main configuration whose pid file, logs and temporary folders are in the
test's folder, so a test never touches /etc/nginx, /etc/apache2 or ports 80/443.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

APACHE_MODULES = (
    "mpm_event",
    "authz_core",
    "alias",
    "setenvif",
    "headers",
    "ssl",
    "http2",
    "proxy",
    "proxy_http",
)


def self_signed(folder: Path, name: str = "portal.test") -> tuple[Path, Path]:
    """A self-signed certificate and its key for ``name`` (and 127.0.0.1)."""
    cert, key = folder / "portal.crt", folder / "portal.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "1", "-subj", f"/CN={name}",
            "-addext", f"subjectAltName=DNS:{name},IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def nginx_main(site: Path, folder: Path) -> Path:
    """A main nginx.conf that includes ``site`` in its http context."""
    folder.chmod(0o755)  # workers run as www-data, as with Debian's own nginx.conf
    worker = pwd.getpwnam("www-data")
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        (folder / sub).mkdir(exist_ok=True)
        os.chown(folder / sub, worker.pw_uid, worker.pw_gid)
    conf = folder / "nginx.conf"
    conf.write_text(
        "user www-data;\n"
        f"daemon off;\nworker_processes 1;\npid {folder}/nginx.pid;\n"
        f"error_log {folder}/logs/error.log warn;\n"
        "events { worker_connections 64; }\n"
        "http {\n"
        "    include /etc/nginx/mime.types;\n"
        f"    access_log {folder}/logs/access.log;\n"
        f"    client_body_temp_path {folder}/client_body;\n"
        f"    proxy_temp_path {folder}/proxy;\n"
        f"    fastcgi_temp_path {folder}/fastcgi;\n"
        f"    uwsgi_temp_path {folder}/uwsgi;\n"
        f"    scgi_temp_path {folder}/scgi;\n"
        f"    include {site};\n"
        "}\n"
    )
    return conf


def nginx_argv(conf: Path, folder: Path) -> list[str]:
    return ["nginx", "-p", str(folder), "-e", str(folder / "logs" / "error.log"), "-c", str(conf)]


def apache_main(site: Path, folder: Path) -> Path:
    """A main apache2.conf that loads the modules the site needs and includes it."""
    (folder / "logs").mkdir(exist_ok=True)
    modules = "".join(
        f"LoadModule {m}_module /usr/lib/apache2/modules/mod_{m}.so\n" for m in APACHE_MODULES
    )
    conf = folder / "apache2.conf"
    conf.write_text(
        f"ServerRoot {folder}\n{modules}"
        f"PidFile {folder}/apache2.pid\nErrorLog {folder}/logs/error.log\n"
        f"DefaultRuntimeDir {folder}\nMutex file:{folder} default\n"
        "ServerName localhost\n"
        f"Include {site}\n"
    )
    return conf


def apache_argv(conf: Path) -> list[str]:
    return ["apache2", "-f", str(conf)]
