# Sourced by the benchmark scripts that start processes in the background.
# stop PID...: ends the processes given: SIGTERM, and SIGKILL to any still running 10 s later.
# (It polls rather than start a watchdog: a watchdog's own sleep would hold the script's output
# open after it ends, and a `| tee` would wait for it.)
stop() {
  kill "$@" 2>/dev/null || true
  local p
  for _ in $(seq 100); do
    for p in "$@"; do kill -0 "$p" 2>/dev/null && break; p=; done
    [ -z "$p" ] && break
    sleep 0.1
  done
  kill -9 "$@" 2>/dev/null || true
  wait "$@" 2>/dev/null || true
}
