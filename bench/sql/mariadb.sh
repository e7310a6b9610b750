# Sourced by the bench scripts, after bench/scratch.sh ($tmp, $server_pid, stop_server):
# a private MariaDB in $tmp/mariadb, on a free loopback port, run as the calling user
# (root here: --user=root), stopped on exit by scratch.sh's trap.
#
#   start_mariadb [PIN...]        installs a data directory and starts mariadbd (prefixed by
#                                 PIN, e.g. taskset -c 1); sets $mariadb_port, $mariadb_url
#                                 (mysql://bench:bench@127.0.0.1:PORT/bench) and
#                                 $mariadb_version; exits with the server's log if it won't
#   mariadb_sql SQL               runs SQL as root over the server's socket
#   load_inventory ROWS           (re)creates inventory(sku BIGINT PRIMARY KEY, stock BIGINT,
#                                 price_cents BIGINT) with skus 1..ROWS, priced and stocked as
#                                 legacy_backend answers: stock = sku*37 % 50,
#                                 price_cents = 199 + sku*7919 % 9800
#
# MARIADB_MAX_CONNECTIONS (default 2048): room for 1 000 threads with a connection each,
# the pools, and the root session. The server keeps its defaults otherwise (one thread per
# connection), with small buffers: the table is a few MiB.
mariadb_dir=$tmp/mariadb
mariadb_port=
mariadb_url=
mariadb_version=

mariadb_sql() {
  mariadb --no-defaults --protocol=socket --socket="$mariadb_dir/sock" -u root --batch --skip-column-names -e "$1"
}

start_mariadb() {
  local tool
  for tool in mariadb-install-db mariadbd mariadb; do
    command -v "$tool" > /dev/null || [[ -x /usr/sbin/$tool ]] ||
      { echo "$tool is missing: apt-get install mariadb-server mariadb-client" >&2; exit 1; }
  done
  local mariadbd
  mariadbd=$(command -v mariadbd || echo /usr/sbin/mariadbd)
  # A tmpdir of its own: a server starting next to ours (another bench, a test fixture)
  # must not find our temporary tables in the shared /tmp, nor we theirs.
  mkdir -p "$mariadb_dir/data" "$mariadb_dir/tmp"
  mariadb-install-db --no-defaults --datadir="$mariadb_dir/data" --tmpdir="$mariadb_dir/tmp" \
    --auth-root-authentication-method=normal --skip-test-db > "$mariadb_dir/install.log" 2>&1 ||
    { echo "mariadb-install-db failed:" >&2; tail -n 20 "$mariadb_dir/install.log" >&2; exit 1; }
  # A free port: try random ones until the server stays up and answers on its socket
  # (a taken port makes mariadbd exit at once).
  local attempt candidate i
  for ((attempt = 0; attempt < 10; attempt++)); do
    candidate=$((20000 + RANDOM % 40000))
    : > "$mariadb_dir/error.log"
    "$@" "$mariadbd" --no-defaults --user="$(id -un)" --datadir="$mariadb_dir/data" --tmpdir="$mariadb_dir/tmp" \
      --socket="$mariadb_dir/sock" --pid-file="$mariadb_dir/pid" --log-error="$mariadb_dir/error.log" --port="$candidate" \
      --bind-address=127.0.0.1 --skip-name-resolve --max-connections="${MARIADB_MAX_CONNECTIONS:-2048}" \
      --back-log=2048 --innodb-buffer-pool-size=64M --innodb-log-file-size=32M \
      --innodb-flush-log-at-trx-commit=2 --skip-log-bin --performance-schema=OFF > /dev/null 2>&1 &
    server_pid=$!
    for ((i = 0; i < 300; i++)); do  # 30 s: a first start on a busy machine is slow
      if ! kill -0 "$server_pid" 2> /dev/null; then wait "$server_pid" 2> /dev/null || true; server_pid=; break; fi
      if mariadb_sql "SELECT 1" > /dev/null 2>&1 && (exec 3<> "/dev/tcp/127.0.0.1/$candidate") 2> /dev/null; then
        mariadb_port=$candidate
        break 2
      fi
      sleep 0.1
    done
    stop_server
    grep -q -i "address already in use" "$mariadb_dir/error.log" 2> /dev/null || break
  done
  [[ -n $mariadb_port ]] ||
    { echo "mariadbd did not start; its log ($mariadb_dir/error.log):" >&2; tail -n 30 "$mariadb_dir/error.log" >&2; exit 1; }
  mariadb_sql "CREATE DATABASE bench; CREATE USER 'bench'@'127.0.0.1' IDENTIFIED BY 'bench';
               GRANT ALL ON bench.* TO 'bench'@'127.0.0.1';" ||
    { echo "could not create the bench database and user" >&2; exit 1; }
  mariadb_url=mysql://bench:bench@127.0.0.1:$mariadb_port/bench
  mariadb_version=$(mariadb_sql "SELECT VERSION()")
}

load_inventory() {  # ROWS
  # seq_1_to_N is MariaDB's Sequence engine: the rows come from the server itself.
  mariadb_sql "USE bench; DROP TABLE IF EXISTS inventory;
    CREATE TABLE inventory (sku BIGINT PRIMARY KEY, stock BIGINT, price_cents BIGINT) ENGINE=InnoDB;
    INSERT INTO inventory SELECT seq, seq * 37 % 50, 199 + seq * 7919 % 9800 FROM seq_1_to_$1;
    ANALYZE TABLE inventory;" > /dev/null ||
    { echo "loading $1 inventory rows failed" >&2; exit 1; }
  local count
  count=$(mariadb_sql "SELECT COUNT(*) FROM bench.inventory")
  [[ $count == "$1" ]] || { echo "inventory holds $count rows, expected $1" >&2; exit 1; }
}
