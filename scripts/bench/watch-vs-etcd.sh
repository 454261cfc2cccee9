#!/usr/bin/env bash
# The watch benchmark, eraftkv against etcd on this machine: put x64 over 1,000 keys with and
# without 1,000 watchers of those keys (one watch per key), each system in turn, round by round.
#
#   npm start                                   # in another terminal (fixed ports, one kv group)
#   scripts/bench/watch-vs-etcd.sh [--reps 2] [--duration 20] [--out DIR]
#
# Load: ../shared/bench/goload (Go; built here if absent) put --conc 64 --keyspace 1000, 256 B values.
# Watchers: eraftkv: node scripts/dist/bench-watch.js --keys 1000 (one EraftKvClient, one watch per
# key); etcd: one `etcdctl watch -i` holding 1,000 watches on one stream. Events/s: the events
# delivered over the load's --duration (eraftkv: bench-watch.js counts from the moment every watch
# started, just before the load; etcd: the PUT events etcdctl printed while the load ran).
# Server RSS: the sum over the three members (the kv servers on 7088-7090, etcd's three), sampled
# every half second, the maximum printed. etcd: a fresh 3-member etcd from
# ../shared/bench/etcdbench/start-cluster.sh (ports 12379/22379/32379), stopped at the end.
# Needs golang-go golang-google-grpc-dev golang-google-protobuf-dev protobuf-compiler etcd-server
# etcd-client (Debian).
set -uo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)
BENCH=$(cd "$ROOT/../shared/bench" 2>/dev/null && pwd) || { echo "watch-vs-etcd.sh: no ../shared/bench next to $ROOT" >&2; exit 1; }
REPS=2 DUR=20 OUT=$ROOT/bench-results/watch-$(date +%Y%m%d-%H%M%S)
while [[ $# -gt 0 ]]; do
  case $1 in
    --reps) REPS=$2; shift 2 ;;
    --duration) DUR=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "watch-vs-etcd.sh: unknown option $1 (--reps N, --duration S, --out DIR)" >&2; exit 128 ;;
  esac
done
die() { echo "watch-vs-etcd.sh: $*" >&2; exit 1; }
for tool in go protoc etcd etcdctl python3 ss; do
  command -v "$tool" >/dev/null || die "no $tool (apt-get install golang-go golang-google-grpc-dev golang-google-protobuf-dev protobuf-compiler etcd-server etcd-client iproute2)"
done
mkdir -p "$OUT/etcd"
export BASE=$OUT/etcd
G=$OUT/goload
(cd "$BENCH/goload" && GO111MODULE=off GOPROXY=off GOPATH=/usr/share/gocode:$HOME/go go build -o "$G" .) \
  || die "go build of $BENCH/goload failed (apt-get install golang-go golang-google-grpc-dev golang-google-protobuf-dev)"
protoc --include_imports --descriptor_set_out="$OUT/eraftkv.pb" -I "$ROOT/protos" eraftkv.proto || die "protoc failed on protos/eraftkv.proto"
protoc --include_imports --descriptor_set_out="$OUT/etcd.pb" -I "$BENCH/etcdbench/load" etcd_min.proto || die "protoc failed on etcd_min.proto"
[[ -f $ROOT/scripts/dist/bench-watch.js ]] || die "no scripts/dist/bench-watch.js: npm run build first"

pid_of() { ss -ltnpH "sport = :$1" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1; }
: >"$OUT/kv.pids"
for p in 7088 7089 7090; do q=$(pid_of $p); [[ -n $q ]] || die "nothing listens on kv port $p: start the cluster (npm start)"; echo "$q" >>"$OUT/kv.pids"; done
"$G" --system eraftkv --desc "$OUT/eraftkv.pb" --op discover >/dev/null 2>&1 || die "the eraftkv cluster does not answer (npm start)"
"$BENCH/etcdbench/start-cluster.sh" >"$OUT/etcd-start.log" 2>&1 || die "etcd did not start; see $OUT/etcd-start.log"
# On any exit: the RSS samplers and watchers stop, and so does etcd.
trap 'rm -f "$OUT/sampling"; kill $(jobs -p) 2>/dev/null; "$BENCH/etcdbench/stop-cluster.sh" >/dev/null 2>&1' EXIT
EP=127.0.0.1:12379,127.0.0.1:22379,127.0.0.1:32379
for i in $(seq 1 60); do etcdctl --endpoints "$EP" endpoint health >/dev/null 2>&1 && break; sleep 0.5; done

rss() { local t=0 p; for p in $(cat "$1"); do t=$((t + $(ps -o rss= -p "$p" || echo 0))); done; echo $((t / 1024)); }
# Samples the RSS sum of the PIDs in $1 while $2 exists; the maximum goes to $3.
sample() { local max=0 r; while [[ -e $2 ]]; do r=$(rss "$1"); ((r > max)) && max=$r; echo $max >"$3"; sleep 0.5; done; }
# ops/s p99 errors of the last goload JSON line of $1
last() { tail -1 "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(round(d["ops_per_s"]), d["lat_ms"]["p99"], d["errors"])'; }
RESULTS=$OUT/results.tsv
printf 'system\tround\twatchers\tputs_per_s\tp99_ms\terrors\tevents_per_s\tserver_rss_max_mib\twatcher_cpu_pct\n' >"$RESULTS"

run_system() { # system round
  local sys=$1 r=$2 pids args
  if [[ $sys == eraftkv ]]; then pids=$OUT/kv.pids; args=(--system eraftkv --desc "$OUT/eraftkv.pb")
  else pids=$BASE/etcd.pids; args=(--system etcd --desc "$OUT/etcd.pb" --endpoints "$EP"); fi
  args+=(--op put --conc 64 --keyspace 1000 --duration "$DUR" --pids-file "$pids")
  # Without watchers.
  touch "$OUT/sampling"; sample "$pids" "$OUT/sampling" "$OUT/rss" & local S=$!
  "$G" "${args[@]}" --json "$OUT/$sys-plain.jsonl" >>"$OUT/$sys.log" 2>&1
  rm -f "$OUT/sampling"; wait $S
  read -r ops p99 errs < <(last "$OUT/$sys-plain.jsonl")
  printf '%s\t%s\t0\t%s\t%s\t%s\t-\t%s\t-\n' "$sys" "$r" "$ops" "$p99" "$errs" "$(cat "$OUT/rss")" >>"$RESULTS"
  # With 1,000 watchers.
  touch "$OUT/sampling"; sample "$pids" "$OUT/sampling" "$OUT/rss" & S=$!
  local W events cpu
  if [[ $sys == eraftkv ]]; then
    node "$ROOT/scripts/dist/bench-watch.js" --keys 1000 --duration "$DUR" --out "$OUT/watch-$r.json" >"$OUT/watch-$r.txt" 2>&1 & W=$!
    for i in $(seq 1 600); do grep -q "watches started" "$OUT/watch-$r.txt" && break; kill -0 $W 2>/dev/null || break; sleep 0.2; done
    grep -q "1000 watches started" "$OUT/watch-$r.txt" || die "the eraftkv watchers did not start; see $OUT/watch-$r.txt"
    "$G" "${args[@]}" --warmup 0 --json "$OUT/$sys-watched.jsonl" >>"$OUT/$sys.log" 2>&1
    wait $W
    read -r events cpu < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["eventsPerSecond"], d["watcherCpuPct"])' "$OUT/watch-$r.json")
  else
    local F=$OUT/etcd-watch-$r.out
    rm -f "$OUT/in"; mkfifo "$OUT/in"
    etcdctl --endpoints "$EP" watch -i <"$OUT/in" >"$F" 2>"$OUT/etcd-watch-$r.err" & W=$!
    exec 9>"$OUT/in"
    for i in $(seq 0 999); do printf 'watch key/%03d\n' "$i"; done >&9
    # The last watch is in place once a put of its key shows up.
    for i in $(seq 1 300); do etcdctl --endpoints "$EP" put key/999 "probe-$r" >/dev/null; grep -q "probe-$r" "$F" && break; sleep 0.2; done
    local n0 t0 c0 n1 t1 c1
    n0=$(grep -c '^PUT$' "$F"); t0=$(date +%s.%N); c0=$(awk '{print $14+$15}' "/proc/$W/stat")
    "$G" "${args[@]}" --warmup 0 --json "$OUT/$sys-watched.jsonl" >>"$OUT/$sys.log" 2>&1
    n1=$(grep -c '^PUT$' "$F"); t1=$(date +%s.%N); c1=$(awk '{print $14+$15}' "/proc/$W/stat")
    exec 9>&-; kill $W 2>/dev/null; wait $W 2>/dev/null; rm -f "$F" "$OUT/in"
    events=$(python3 -c "print(round(($n1-$n0)/($t1-$t0)))")
    cpu=$(python3 -c "print(round(($c1-$c0)/$(getconf CLK_TCK)/($t1-$t0)*100))")
  fi
  rm -f "$OUT/sampling"; wait $S
  read -r ops p99 errs < <(last "$OUT/$sys-watched.jsonl")
  printf '%s\t%s\t1000\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sys" "$r" "$ops" "$p99" "$errs" "$events" "$(cat "$OUT/rss")" "$cpu" >>"$RESULTS"
}

for r in $(seq 1 "$REPS"); do
  if ((r % 2)); then order=(eraftkv etcd); else order=(etcd eraftkv); fi
  for sys in "${order[@]}"; do echo "== round $r: $sys"; run_system "$sys" "$r"; tail -2 "$RESULTS" | column -t; done
done
echo
echo "eraftkv $(git -C "$ROOT" rev-parse --short HEAD), $(date -u +%Y-%m-%d): medians over $REPS rounds of ${DUR} s ($RESULTS)"
python3 - "$RESULTS" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter='\t'))
def med(sys_, watchers, field):
    v = [float(r[field]) for r in rows if r['system'] == sys_ and r['watchers'] == watchers and r[field] != '-']
    return statistics.median(v) if v else float('nan')
print('| | eraftkv | etcd | eraftkv/etcd |\n|---|---|---|---|')
for label, w, f in [('puts/s, no watchers', '0', 'puts_per_s'), ('puts/s, 1,000 watchers', '1000', 'puts_per_s'),
                    ('events/s delivered', '1000', 'events_per_s'), ('server RSS max MiB (3 members), no watchers', '0', 'server_rss_max_mib'),
                    ('server RSS max MiB (3 members), 1,000 watchers', '1000', 'server_rss_max_mib'),
                    ('watcher process CPU %', '1000', 'watcher_cpu_pct')]:
    e, c = med('eraftkv', w, f), med('etcd', w, f)
    print(f'| {label} | {e:.0f} | {c:.0f} | {e / c:.2f} |')
for s in ('eraftkv', 'etcd'):
    print(f'{s}: puts with watchers / without: {med(s, "1000", "puts_per_s") / med(s, "0", "puts_per_s"):.2f}')
EOF
