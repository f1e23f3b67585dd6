# Sourced by the benchmark scripts that start processes in the background.
# stop PID...: ends the processes given: SIGTERM, and SIGKILL to any still running 10 s later.
stop() {
  kill "$@" 2>/dev/null || true
  ( sleep 10; kill -9 "$@" 2>/dev/null ) & local watchdog=$!
  wait "$@" 2>/dev/null || true
  kill "$watchdog" 2>/dev/null || true
}
