#!/bin/bash
# hpcportal-mailprog in bash, for a slurmctld host (or chroot) without the portal's Python.
# Slurm runs it as: mailprog.sh -s "<subject>" <recipient>. It posts what
# hpcportal-mailprog posts, over plain HTTP only (bash's /dev/tcp: use it on loopback
# or a trusted network; the Python program speaks HTTPS). The portal parses the
# subject itself. Settings come from HPCPORTAL_MAILPROG_CONFIG or
# /etc/hpcportal/slurm-mail.conf (url, secret_file, timeout). Always exits 0 quickly:
# slurmctld waits for its MailProg.
LC_ALL=C
export LC_ALL
complain() {
    printf 'hpcportal-mailprog: %s\n' "$1" >&2
    command -v logger >/dev/null 2>&1 && logger -t hpcportal-mailprog -p mail.warning -- "$1"
    exit 0
}
[ "$#" -ge 2 ] && [ "$1" = "--config" ] && { config=$2; shift 2; }
config=${config:-${HPCPORTAL_MAILPROG_CONFIG:-/etc/hpcportal/slurm-mail.conf}}
[ "$#" -eq 3 ] && [ "$1" = "-s" ] || complain "usage: mailprog.sh [--config FILE] -s SUBJECT RECIPIENT"
subject=$2 recipient=$3
url=http://127.0.0.1:8080/api/v1/slurm-mail secret_file=/etc/hpcportal/slurm-mail.secret timeout=5
if [ -r "$config" ]; then
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in ''|'#'*) continue ;; esac
        key=${line%%=*} value=${line#*=}
        key=${key//[[:space:]]/} value=${value#"${value%%[![:space:]]*}"}
        value=${value%"${value##*[![:space:]]}"}
        case "$key" in
            url) url=$value ;; secret_file) secret_file=$value ;; timeout) timeout=${value%%.*} ;;
            *) complain "$config: unknown key $key" ;;
        esac
    done < "$config"
fi
case "$url" in http://*) ;; *) complain "only http:// URLs here, not $url" ;; esac
case "$timeout" in ''|*[!0-9]*|0) timeout=5 ;; esac
rest=${url#http://} hostport=${rest%%/*} path=/${rest#*/}
[ "$rest" = "$hostport" ] && path=/
host=${hostport%:*} port=${hostport##*:}
[ "$host" = "$hostport" ] && port=80
secret=$(cat -- "$secret_file" 2>/dev/null) || complain "cannot read $secret_file"
secret=${secret//[[:space:]]/}
json() {  # a JSON string: backslash, quote and control characters escaped
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//[$'\x01'-$'\x1f']/ }
    printf '"%s"' "$s"
}
opt() { if [ -n "$1" ]; then json "$1"; else printf null; fi; }
body="{\"subject\":$(json "$subject"),\"recipient\":$(json "$recipient"),\"job_user\":$(opt "${SLURM_JOB_USER:-}"),\"job_id\":$(opt "${SLURM_JOB_ID:-}")}"
send() {
    exec 3<>"/dev/tcp/$host/$port" || exit 2
    printf 'POST %s HTTP/1.0\r\nHost: %s\r\nContent-Type: application/json\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
        "$path" "$hostport" "$secret" "${#body}" "$body" >&3
    IFS= read -r status <&3
    printf '%s\n' "$status"
}
export -f send json
status=$(host=$host port=$port path=$path hostport=$hostport secret=$secret body=$body \
    timeout "$timeout" bash -c send 2>/dev/null)
case "$status" in
    'HTTP/'*' 2'[0-9][0-9]*) exit 0 ;;
    '') complain "no answer from $hostport within ${timeout}s" ;;
    *) complain "the portal refused the mail: ${status%$'\r'}" ;;
esac
