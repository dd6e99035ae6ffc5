# shellcheck shell=bash
# Common helpers for the testbed scripts. Sourced, never executed.
#
#   tb_init NAME   strict mode, an ERR trap that names the failing command,
#                  testbed.env loaded (variables already set win), paths set.

tb_init() {
  TB_NAME="$1"
  set -Eeuo pipefail
  trap 'tb__on_err $? "$BASH_COMMAND" "${BASH_SOURCE[0]}" "$LINENO"' ERR

  TB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  tb_load_env "$TB_DIR/testbed.env"

  # Cache outside the repo so a fresh clone reuses binaries and the venv.
  TB_HOME="${CALLPROBE_TESTBED_HOME:-${HOME:-/root}/.cache/callprobe-testbed}"
  TB_BIN="$TB_HOME/bin"
  TB_VENV="$TB_HOME/venv"
  TB_PY="$TB_VENV/bin/python"
  TB_RUN="${CALLPROBE_TESTBED_RUN:-$TB_DIR/.run}"
  TB_LOGS="$TB_RUN/logs"
  TB_PIDS="$TB_RUN/pids"
  # CALLPROBE_TESTBED_SIP:
  #   auto (default): LiveKit SIP is on when a livekit-sip binary is there
  #                   (LIVEKIT_SIP_BIN, or built by testbed/install), else off;
  #   required:       LiveKit SIP must be installed and running;
  #   off:            run without it (only the LiveKit server, Redis and the
  #                   agent; SIP checks are skipped and say so).
  # TB_SIP is what was decided (required|off), TB_SIP_WHY says why.
  TB_SIP_MODE="${CALLPROBE_TESTBED_SIP:-auto}"
  case "$TB_SIP_MODE" in
    required) TB_SIP=required TB_SIP_WHY="CALLPROBE_TESTBED_SIP=required" ;;
    # CALLPROBE_TESTBED_SIP_WHY: the reason an earlier `auto` decided off
    # (scripts/test passes its decision on), else the variable itself.
    off) TB_SIP=off TB_SIP_WHY="${CALLPROBE_TESTBED_SIP_WHY:-CALLPROBE_TESTBED_SIP=off}" ;;
    auto) tb_sip_decide ;;
    *) tb_die "CALLPROBE_TESTBED_SIP must be 'auto', 'required' or 'off' (got '$TB_SIP_MODE')" ;;
  esac
  export TB_DIR TB_HOME TB_BIN TB_VENV TB_PY TB_RUN TB_LOGS TB_PIDS TB_SIP TB_SIP_MODE TB_SIP_WHY
}

# auto: on when a livekit-sip binary of the pinned version is there.
tb_sip_decide() {
  local bin
  bin="$(tb_sip_bin)"
  if [[ -n "${LIVEKIT_SIP_BIN:-}" ]]; then
    if [[ -x "$bin" ]]; then
      TB_SIP=required TB_SIP_WHY="LIVEKIT_SIP_BIN=$bin"
    else
      TB_SIP=off TB_SIP_WHY="LIVEKIT_SIP_BIN=$bin is not an executable"
    fi
  elif [[ -x "$bin" ]] && tb_sip_stamp_ok; then
    TB_SIP=required TB_SIP_WHY="livekit-sip $(tb_sip_stamp) in $TB_BIN"
  else
    TB_SIP=off
    TB_SIP_WHY="no livekit-sip $LIVEKIT_SIP_VERSION binary in $TB_BIN (testbed/install builds one: see testbed/README.md, 'LiveKit SIP')"
  fi
}

# The stamp beside the cached binary (the one testbed/install's go_install
# writes, NAME.version): first word is what was built ($(tb_sip_built)), the
# rest, for a build from local sources, says from which commits.
tb_sip_built() { echo "github.com/livekit/sip/cmd/livekit-sip@$LIVEKIT_SIP_VERSION"; }
tb_sip_stamp_file() { echo "$TB_BIN/.livekit-sip.version"; }
tb_sip_stamp() { cat "$(tb_sip_stamp_file)" 2>/dev/null || true; }
tb_sip_stamp_ok() {
  local s
  s="$(tb_sip_stamp)"
  [[ "${s%% *}" == "$(tb_sip_built)" ]]
}

# One loud line when LiveKit SIP is off (scripts/test, scripts/demo, smoke).
tb_sip_off_banner() {
  echo "!!! LiveKit SIP is OFF: no call of this run reaches LiveKit SIP ($TB_SIP_WHY). The real-SIP tests are SKIPPED, not passed. !!!" >&2
}

tb__on_err() {
  local rc="$1" cmd="$2" src="$3" line="$4"
  echo "testbed/$TB_NAME: FAILED (exit $rc) at $(basename "$src"):$line: $cmd" >&2
}

# Load KEY=VALUE lines; an already-set variable keeps its value.
tb_load_env() {
  local file="$1" line key value
  [[ -f "$file" ]] || tb_die "missing $file"
  while IFS= read -r line || [[ -n "$line" ]]; do
    line="${line%$'\r'}"
    [[ -z "${line//[[:space:]]/}" || "$line" =~ ^[[:space:]]*# ]] && continue
    [[ "$line" =~ ^([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || tb_die "bad line in $file: $line"
    key="${BASH_REMATCH[1]}"
    value="${BASH_REMATCH[2]}"
    if [[ -z "${!key+x}" ]]; then
      export "$key=$value"
    else
      export "${key?}"
    fi
  done <"$file"
}

tb_log() { echo "[testbed/$TB_NAME] $*" >&2; }

tb_die() {
  echo "testbed/${TB_NAME:-?}: ERROR: $*" >&2
  exit 1
}

# tb_wait DESC TIMEOUT_S CMD...: poll CMD every 0.5 s until it succeeds.
tb_wait() {
  local desc="$1" timeout="$2"
  shift 2
  local deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.5
  done
  tb_log "timed out after ${timeout}s waiting for: $desc (check: $*)"
  return 1
}

tb_tcp_listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
tb_udp_bound() { ss -Hlun "sport = :$1" 2>/dev/null | grep -q .; }

tb_http_ok() { curl -fsS -m 2 -o /dev/null "$1"; }

# Process bookkeeping: pids/NAME.pid holds "PID STARTTIME", where STARTTIME is
# field 22 of /proc/PID/stat, so a recycled pid is never mistaken for ours.
tb_proc_starttime() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null; }

tb_pid_of() {
  local f="$TB_PIDS/$1.pid" pid st
  [[ -f "$f" ]] || return 1
  read -r pid st <"$f" || return 1
  [[ -n "$pid" && -d "/proc/$pid" ]] || return 1
  [[ "$(tb_proc_starttime "$pid")" == "$st" ]] || return 1
  echo "$pid"
}

tb_is_running() { tb_pid_of "$1" >/dev/null; }

# tb_start NAME CMD...: run CMD in its own session/process group (setsid),
# stdin from /dev/null, output to logs/NAME.log; record the pid.
tb_start() {
  local name="$1"
  shift
  mkdir -p "$TB_LOGS" "$TB_PIDS"
  if tb_is_running "$name"; then
    tb_die "$name is already running (pid $(tb_pid_of "$name")); run testbed/down first"
  fi
  local log="$TB_LOGS/$name.log"
  echo "=== $(date -u +%FT%TZ) starting $name: $1" >>"$log"
  setsid "$@" </dev/null >>"$log" 2>&1 &
  local pid=$!
  local st=""
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    st="$(tb_proc_starttime "$pid")" && [[ -n "$st" ]] && break
    sleep 0.05
  done
  [[ -n "$st" ]] || tb_die "$name exited immediately; see $log: $(tail -n 5 "$log")"
  echo "$pid $st" >"$TB_PIDS/$name.pid"
  echo "$pid" >>"$TB_PIDS/all-pgids"
  tb_log "started $name (pid $pid, log $log)"
}

# tb_stop NAME [TIMEOUT_S]: TERM the process group, then KILL after timeout.
tb_stop() {
  local name="$1" timeout="${2:-15}" pid
  if ! pid="$(tb_pid_of "$name")"; then
    rm -f "$TB_PIDS/$name.pid"
    return 0
  fi
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)) && pgrep -g "$pid" >/dev/null 2>&1; do
    sleep 0.2
  done
  if pgrep -g "$pid" >/dev/null 2>&1; then
    tb_log "$name (pgid $pid) did not stop within ${timeout}s: sending KILL"
    kill -KILL -- "-$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$TB_PIDS/$name.pid"
  tb_log "stopped $name (pgid $pid)"
}

tb_need_venv() {
  [[ -x "$TB_PY" ]] || tb_die "no Python venv at $TB_VENV: run testbed/install first"
}

tb_need_bin() {
  [[ -x "$TB_BIN/$1" ]] || tb_die "missing $TB_BIN/$1: run testbed/install first"
}

# Escape a string for use as an extended regex in pgrep -f.
tb_re_escape() { printf '%s' "$1" | sed 's/[][\.*^$+?(){}|]/\\&/g'; }

# Render a template: @VAR@ is replaced by the value of $VAR.
tb_render() {
  local tmpl="$1" out="$2" content var
  content="$(cat "$tmpl")"
  for var in $(grep -o '@[A-Z_][A-Z0-9_]*@' "$tmpl" | sort -u | tr -d '@'); do
    [[ -n "${!var+x}" ]] || tb_die "template $tmpl needs \$$var, which is not set"
    content="${content//"@$var@"/"${!var}"}"
  done
  (umask 077 && printf '%s\n' "$content" >"$out")
}

# tb_tls_certs DIR: the testbed's TLS CA (ca.pem, ca.key) and LiveKit SIP's
# server certificate for 127.0.0.1 (server.pem, server.key; IP SAN only, so a
# call to "localhost" is a wrong-host case). Made once; remade when missing
# or within a day of expiry.
tb_tls_certs() {
  local dir="$1"
  if [[ -f "$dir/server.pem" && -f "$dir/ca.pem" ]] && openssl x509 -checkend 86400 -noout -in "$dir/server.pem" >/dev/null 2>&1; then
    return 0
  fi
  command -v openssl >/dev/null || tb_die "openssl is needed for the testbed's TLS certificate (Debian package openssl)"
  mkdir -p "$dir"
  (
    umask 077
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
      -subj "/CN=callprobe testbed CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null &&
      openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/CN=127.0.0.1" -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null &&
      printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1" >"$dir/server.ext" &&
      openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 825 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
  ) || tb_die "could not make the testbed's TLS certificate in $dir"
  chmod 644 "$dir/ca.pem" "$dir/server.pem"
  tb_log "made the testbed's TLS CA and LiveKit SIP certificate in $dir (trust $dir/ca.pem)"
}

tb_sip_bin() {
  if [[ -n "${LIVEKIT_SIP_BIN:-}" ]]; then echo "$LIVEKIT_SIP_BIN"; else echo "$TB_BIN/livekit-sip"; fi
}

# tb_agent_start NAME MODE [INTERRUPTIBLE]: start an agent worker and wait until
# it registered. INTERRUPTIBLE (PROBE_AGENT_INTERRUPTIBLE, default 1): 1 = caller
# speech stops the agent's clip (barge-in), 0 = the agent finishes its clip.
tb_agent_start() {
  local name="$1" mode="$2" interruptible="${3:-${PROBE_AGENT_INTERRUPTIBLE:-1}}" svc="agent-$1"
  case "$mode" in normal|silent|crash|slow-join) ;; *) tb_die "unknown agent mode '$mode' (normal|silent|crash|slow-join)" ;; esac
  case "$interruptible" in 0|1) ;; *) tb_die "interruptible must be 0 or 1 (got '$interruptible')" ;; esac
  tb_need_venv
  mkdir -p "$TB_LOGS"
  local log="$TB_LOGS/$svc.log"
  local before=0
  [[ -f "$log" ]] && before="$(wc -l <"$log")"
  tb_start "$svc" env PROBE_AGENT_NAME="$name" PROBE_AGENT_MODE="$mode" PROBE_AGENT_INTERRUPTIBLE="$interruptible" \
    PROBE_FIXTURES_DIR="$TB_RUN/fixtures" PROBE_STATE_DIR="$TB_RUN" PYTHONUNBUFFERED=1 PYTHONWARNINGS="ignore:The HMAC key" \
    "$TB_PY" "$TB_DIR/agent/agent.py" start
  echo "$mode" >"$TB_PIDS/$svc.mode"
  echo "$interruptible" >"$TB_PIDS/$svc.interruptible"
  local deadline=$((SECONDS + ${PROBE_AGENT_REGISTER_TIMEOUT:-90}))
  while ((SECONDS < deadline)); do
    if tail -n +"$((before + 1))" "$log" | grep -q "registered worker"; then
      tb_log "agent '$name' (mode $mode, interruptible $interruptible) registered with the LiveKit server"
      return 0
    fi
    tb_is_running "$svc" || { tail -n 30 "$log" >&2; tb_die "agent '$name' exited before registering (log: $log)"; }
    sleep 0.5
  done
  tail -n 30 "$log" >&2
  tb_die "agent '$name' did not register within ${PROBE_AGENT_REGISTER_TIMEOUT:-90}s (log: $log)"
}
