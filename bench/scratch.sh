# Sourced by the bench scripts: a scratch directory $tmp, removed on exit, and the
# background process under test, $server_pid, stopped on exit or by stop_server.
tmp=$(mktemp -d)
server_pid=
stop_server() {
  if [[ -n $server_pid ]]; then kill -TERM "$server_pid" 2> /dev/null || true; wait "$server_pid" 2> /dev/null || true; fi
  server_pid=
}
trap 'stop_server; rm -rf "$tmp"' EXIT
