#!/usr/bin/env python3
"""Latency from the moment the producer's COMMIT returned to the arrival.

    commit_latency.py ARRIVALS TXLOG...

ARRIVALS: bench-receiver -o lines "client commit_us arrival_us", where
commit_us was taken at the INSERT (data.commit_us) and client is pgbench's
:client_id (data.client). TXLOG: pgbench -l -R logs, one line per
transaction: client_id transaction_no time script_no time_epoch time_us
schedule_lag, where time_epoch.time_us is when the transaction ended and
time - schedule_lag is how long it ran.

Each event is matched to its own transaction (same client, started at or
before its INSERT, ended at or after it); its latency is the arrival minus
that transaction's end. Prints one JSON line: matched, unmatched, early
(arrived before pgbench saw the COMMIT return: negative latencies, kept in
the figures), lat_p50_ms, lat_p99_ms, lat_max_ms. Exit 1 when an event has
no transaction or nothing matched.
"""
import bisect
import json
import sys


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    ends, starts = {}, {}
    for path in argv[2:]:
        with open(path) as f:
            for line in f:
                client, _, took, _, sec, usec, lag = line.split()[:7]
                end = int(sec) * 1000000 + int(usec)
                ends.setdefault(int(client), []).append((end, end - (int(took) - int(lag))))
    for client, txs in ends.items():
        txs.sort()
        starts[client] = [start for _, start in txs]
        ends[client] = [end for end, _ in txs]
    lat, unmatched = [], 0
    with open(argv[1]) as f:
        for line in f:
            client, commit, arrival = (int(v) for v in line.split())
            e = ends.get(client, [])
            i = bisect.bisect_left(e, commit)
            if i == len(e) or starts[client][i] > commit:
                unmatched += 1
                continue
            lat.append(arrival - e[i])
    lat.sort()
    out = {"matched": len(lat), "unmatched": unmatched, "early": sum(1 for v in lat if v < 0)}
    if lat:
        out["lat_p50_ms"] = round(lat[len(lat) // 2] / 1000, 3)
        out["lat_p99_ms"] = round(lat[len(lat) * 99 // 100] / 1000, 3)
        out["lat_max_ms"] = round(lat[-1] / 1000, 3)
    print(json.dumps(out, separators=(",", ":")))
    return 0 if lat and not unmatched else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
