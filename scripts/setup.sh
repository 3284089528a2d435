#!/usr/bin/env bash
# Shared set-up for the demo and the test suite: system packages, services, venv.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run again (idempotent).
# It starts PostgreSQL only when none answers, and never stops a service.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HPCPORTAL_VENV:-$REPO/.venv}"
# The system interpreter: the portal's service account (tests run it as one) must be
# able to execute it, which a per-user build such as pyenv under /root is not.
PY="${PYTHON:-/usr/bin/python3}"

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "Run this as root: it installs packages, creates the demo Unix users and runs Slurm." >&2
    exit 1
  fi
}

# install_missing PKG... : apt-get install only the packages not yet installed.
install_missing() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

system_packages() {
  # Slurm, munge and MariaDB for the dev cluster; sudo and runuser for the privileged
  # boundary; python venv tooling; wrk for the benchmarks; Debian's Chromium (driven by
  # Playwright, which downloads no browser) and a CJK font for the browser tests; the
  # sqlite3 shell, with which a test reads the portal's database as another user;
  # NanumGothic, the font PDF reports embed (reports_font_path), and poppler-utils
  # (pdftotext, pdffonts, pdftoppm), with which the report tests read the PDFs back.
  install_missing slurm-wlm slurmdbd munge mariadb-server mariadb-client sudo \
    python3 python3-venv python3-dev gcc libpam0g wrk procps chromium fonts-noto-cjk \
    sqlite3 fonts-nanum poppler-utils
  monitoring_packages
  app_packages
}

# The dev cluster's monitoring: Prometheus, the node exporter and Alertmanager, which `dev-cluster up`
# runs on its own ports under the cluster's directory. Their packages would start
# system-wide daemons on 9090/9100; a policy-rc.d saying no (unless the host has one)
# keeps the install from starting anything.
monitoring_packages() {
  local policy=/usr/sbin/policy-rc.d ours=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# hpcportal setup: installing\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    ours=1
  fi
  install_missing prometheus prometheus-node-exporter prometheus-alertmanager || { [ -n "$ours" ] && rm -f "$policy"; return 1; }
  if [ -n "$ours" ]; then rm -f "$policy"; fi
}

# Only for a dev cluster of a newer Slurm (test.sh --slurm 24.11|26.05): its Debian root
# (Debian 13 or sid, cached in /var/cache/hpcportal/roots) is made with debootstrap.
slurm_root_packages() {
  install_missing debootstrap
}

# What the interactive apps (src/hpcportal/apps) run on a compute node: TigerVNC's X
# server and vncpasswd, websockify, the JWM window manager, xterm and Mousepad, and
# x11-utils and xdotool for tests; D-Bus for a session bus per GTK app; openssl, with
# which each session makes its TLS key and certificate (its server answers only the
# portal, over mutual TLS). Plus the X
# socket folder, root's as on a booted system: Xvnc, run as a user, would otherwise
# create it as that user, who could then remove other users' sockets.
app_packages() {
  install_missing tigervnc-standalone-server tigervnc-tools websockify xterm jwm mousepad \
    x11-utils xdotool xauth dbus-daemon openssl
  mkdir -p /tmp/.X11-unix
  chown root:root /tmp/.X11-unix
  chmod 1777 /tmp/.X11-unix
}

# The site software the shipped apps' settings point at: JupyterLab in its own
# virtualenv, world-readable, which the jupyter app runs as the user on the node.
APPS_PREFIX=/opt/hpcportal/apps
app_runtimes() {
  local venv="$APPS_PREFIX/jupyter"
  if [ -x "$venv/bin/jupyter" ] && "$venv/bin/python" -c "import jupyterlab, ipykernel" 2>/dev/null; then
    return
  fi
  log "installing JupyterLab into $venv"
  (
    umask 022
    mkdir -p "$APPS_PREFIX"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$venv/bin/python" -m pip install -q "jupyterlab>=4.2,<5" ipykernel
  )
  chmod -R a+rX "$APPS_PREFIX"
}

postgres_up() {
  install_missing postgresql postgresql-client
  if pg_isready -q -h 127.0.0.1 -p 5432; then
    return
  fi
  log "starting PostgreSQL (none was answering)"
  local version
  version="$(ls /etc/postgresql | sort -V | tail -n1)"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && return; sleep 1; done
  echo "PostgreSQL did not start" >&2
  exit 1
}

# High availability and site installation: the front ends and tools whose configurations
# the tests render and check with the real program (haproxy -c, keepalived
# --config-test, redis-sentinel, nginx -t, apachectl -t), and what builds the Debian
# package. Installing them starts no service (policy-rc.d; no init system here).
ops_packages() {
  install_missing haproxy keepalived redis-server redis-sentinel nginx apache2 \
    debhelper dpkg-dev fakeroot
}

# Redis for the replicas' shared state: reuse one answering on 127.0.0.1:6379, else
# start one that keeps nothing on disk (never stopped by us: it may be shared).
redis_up() {
  install_missing redis-server
  if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    return
  fi
  log "starting Redis (none was answering on 127.0.0.1:6379)"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no \
    --logfile /var/log/redis-hpcportal-test.log
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && return; sleep 1; done
  echo "Redis did not start" >&2
  exit 1
}

# MariaDB as the portal's second server database (Galera sites): a test role that may
# create and drop its own databases, as for PostgreSQL. The server is the dev cluster's
# (reused if one answers, else started by `dev-cluster up`), so this runs after it.
mariadb_test_role() {
  local pw="hpcportal-test"
  if ! mysqladmin --connect-timeout=2 ping >/dev/null 2>&1; then
    return  # no server yet: the dev cluster starts one; the tests skip MariaDB outside CI
  fi
  mysql -u root <<SQL
CREATE USER IF NOT EXISTS 'hpcportal_test'@'127.0.0.1' IDENTIFIED BY '$pw';
CREATE USER IF NOT EXISTS 'hpcportal_test'@'localhost' IDENTIFIED BY '$pw';
GRANT ALL PRIVILEGES ON \`hpcportal\_t\_%\`.* TO 'hpcportal_test'@'127.0.0.1';
GRANT ALL PRIVILEGES ON \`hpcportal\_t\_%\`.* TO 'hpcportal_test'@'localhost';
SQL
  export HPCPORTAL_TEST_MARIADB_URL="mysql+pymysql://hpcportal_test:$pw@127.0.0.1:3306/"
}

# A PostgreSQL role for the test suite that works with any pg_hba method: tests
# connect as it over TCP with a password, creating and dropping their own databases.
postgres_test_role() {
  local pw="hpcportal-test"
  runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -d postgres <<SQL >/dev/null
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'hpcportal_test') THEN
    CREATE ROLE hpcportal_test LOGIN CREATEDB PASSWORD '$pw';
  END IF;
END \$\$;
SQL
  export HPCPORTAL_TEST_POSTGRES_URL="postgresql+psycopg://hpcportal_test:$pw@127.0.0.1:5432/postgres"
}

python_env() {
  local extra="${1:-}"
  if [ -f "$VENV/pyvenv.cfg" ] && ! grep -q "^home = $(dirname "$(readlink -f "$PY")")\$" "$VENV/pyvenv.cfg"; then
    log "recreating $VENV with $PY"
    rm -rf "$VENV"
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV"
    "$PY" -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  log "installing hpcportal${extra:+[$extra]} into $VENV"
  "$VENV/bin/python" -m pip install -q -e "$REPO${extra:+[$extra]}"
}
