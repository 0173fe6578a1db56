// Benchmark (not a test): how long the page's checker takes in headless Chromium
// on 1,000 PeerAuthentications × 100 workloads, and how big the module is.
// Run: `bash wasm-web/build.sh && cd tests/browser && node bench.mjs`.
// Prints a Markdown section for BENCHMARKS.md; `--print-input` prints the generated YAML instead.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import os from 'node:os';
import { serve, launch, WEB } from './harness.mjs';

const POLICIES = 1000;
const WORKLOADS = 100;
const NAMESPACES = 10;
const RUNS = 9;

// 100 Deployments + Services over 10 injected namespaces, and 1,000 policies: one
// mesh-wide, one per namespace, and the rest workload policies with port-level
// entries, several per workload (so precedence and the overlap checks do work).
function generate() {
  const docs = [];
  for (let n = 0; n < NAMESPACES; n++) {
    docs.push(`apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns${n}\n  labels:\n    istio-injection: ${n === 0 ? 'disabled' : 'enabled'}\n`);
  }
  for (let w = 0; w < WORKLOADS; w++) {
    const ns = `ns${w % NAMESPACES}`;
    docs.push(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: app${w}
  namespace: ${ns}
spec:
  selector:
    matchLabels:
      app: app${w}
  template:
    metadata:
      labels:
        app: app${w}
        tier: t${w % 4}
    spec:
      containers:
        - name: main
          image: example/app
          ports:
            - containerPort: 8080
            - containerPort: 9090
`);
    docs.push(`apiVersion: v1
kind: Service
metadata:
  name: app${w}
  namespace: ${ns}
spec:
  selector:
    app: app${w}
  ports:
    - name: http
      port: 80
      targetPort: 8080
`);
  }
  const modes = ['STRICT', 'PERMISSIVE', 'DISABLE'];
  docs.push('apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: istio-system\nspec:\n  mtls:\n    mode: STRICT\n');
  for (let n = 0; n < NAMESPACES; n++) {
    docs.push(`apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: ns${n}\nspec:\n  mtls:\n    mode: ${modes[n % 2]}\n`);
  }
  for (let p = 0; p < POLICIES - NAMESPACES - 1; p++) {
    const w = p % WORKLOADS;
    docs.push(`apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: p${p}
  namespace: ns${w % NAMESPACES}
  creationTimestamp: "2026-01-01T00:${String(Math.floor(p / 60) % 60).padStart(2, '0')}:${String(p % 60).padStart(2, '0')}Z"
spec:
  selector:
    matchLabels:
      app: app${w}
  mtls:
    mode: ${modes[p % 3]}
  portLevelMtls:
    9090:
      mode: ${modes[(p + 1) % 3]}
`);
  }
  return docs.join('---\n');
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};

// `--scale`: issue 18's pasted cluster instead: 500 namespaces × 10 Deployments, each
// behind a two-port Service; one namespace in five without injection, every fourth
// STRICT (5,000 workloads, 50 million matrix cells, which the page shows grouped).
function generateCluster() {
  const docs = [];
  for (let i = 0; i < 500; i++) {
    const ns = `ns-${String(i).padStart(3, '0')}`;
    docs.push(`apiVersion: v1\nkind: Namespace\nmetadata: {name: ${ns}, labels: {istio-injection: ${i % 5 === 4 ? 'disabled' : 'enabled'}}}\n`);
    if (i % 4 === 0) {
      docs.push(`apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: ${ns}}\nspec: {mtls: {mode: STRICT}}\n`);
    }
    for (let j = 0; j < 10; j++) {
      docs.push(`apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app-${j}, namespace: ${ns}}\nspec: {template: {metadata: {labels: {app: app-${j}}}, spec: {containers: [{name: c, ports: [{containerPort: 8080}, {containerPort: 9090}]}]}}}\n`);
      docs.push(`apiVersion: v1\nkind: Service\nmetadata: {name: app-${j}, namespace: ${ns}}\nspec: {selector: {app: app-${j}}, ports: [{port: 80, targetPort: 8080}, {port: 9090}]}\n`);
    }
  }
  return docs.join('---\n');
}

const scale = process.argv.includes('--scale');
const text = scale ? generateCluster() : generate();
// `node bench.mjs --print-input > big.yaml` gives the same input to native tools.
if (process.argv.includes('--print-input')) {
  process.stdout.write(text);
  process.exit(0);
}
if (scale) {
  const server = await serve();
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(server.url);
    await page.waitForFunction(() => document.body.dataset.status === 'ready');
    const cdp = await page.context().newCDPSession(page);
    const runs = [];
    for (let i = 0; i < 3; i++) {
      const t0 = Date.now();
      const [total, paint] = await page.evaluate((t) => new Promise((ok) => {
        const input = document.getElementById('input');
        input.value = `${t}\n# run ${Math.random()}\n`;
        const before = document.body.dataset.evaluations;
        const observer = new MutationObserver(() => {
          if (document.body.dataset.evaluations === before) return;
          observer.disconnect();
          const done = performance.now();
          const { total } = JSON.parse(document.body.dataset.timings);
          requestAnimationFrame(() => setTimeout(() => ok([total, total + performance.now() - done]), 0));
        });
        observer.observe(document.body, { attributes: true });
        input.dispatchEvent(new Event('input'));
      }), text);
      await cdp.send('HeapProfiler.collectGarbage');
      const heap = await cdp.send('Runtime.getHeapUsage');
      const wasmBytes = await page.workers()[0]?.evaluate(() => globalThis.peerauthWasmBytes?.() ?? 0);
      const shown = await page.evaluate(() => ({
        groups: document.querySelectorAll('#matrix tbody tr[data-client-namespace]').length,
        caption: document.querySelector('#matrix caption')?.textContent ?? '',
        diagnostics: document.querySelectorAll('#diagnostics li, #diagnostics tr').length,
        timings: document.body.dataset.timings,
      }));
      runs.push({ total, paint, wall: Date.now() - t0, heap: heap.usedSize, wasmBytes, shown });
    }
    const mb = (b) => (b / 1048576).toFixed(0);
    console.log(`Input: ${(text.length / 1024).toFixed(0)} KiB of YAML (5,000 workloads, 5,000 Services).`);
    console.log('');
    console.log('| run | page: evaluate + DOM | until painted | page JS heap (after GC) | worker wasm memory | rows drawn |');
    console.log('|---|---|---|---|---|---|');
    runs.forEach((r, i) => console.log(`| ${i + 1} | ${r.total.toFixed(0)} ms | ${r.paint.toFixed(0)} ms | ${mb(r.heap)} MB | ${mb(r.wasmBytes)} MB | ${r.shown.groups} |`));
    console.log(`| median | ${median(runs.map((r) => r.total)).toFixed(0)} ms | ${median(runs.map((r) => r.paint)).toFixed(0)} ms | | | |`);
    console.log('');
    console.log(`timings of the last run (ms; bytes: the result JSON): ${runs.at(-1).shown.timings}`);
    console.log(`caption: ${runs.at(-1).shown.caption}`);
  } finally {
    await browser.close();
    await server.close();
  }
  process.exit(0);
}
const server = await serve();
const browser = await launch();
try {
  const page = await browser.newPage();
  await page.goto(server.url);
  await page.waitForFunction(() => document.body.dataset.status === 'ready');
  const result = await page.evaluate(async ({ text, runs }) => {
    // V8 first runs wasm in its baseline compiler and tiers up in the background:
    // warm up before timing so both measurements see the optimised code.
    for (let i = 0; i < 3; i++) await window.peerauth.evaluate(`${text}\n# warm-up ${i}\n`, { matrix: true });
    // Round trip to the page's worker: post the text, evaluate in wasm, post the
    // JSON back, JSON.parse on the page. Each run's text differs by a comment: the
    // worker keeps its last evaluation and would answer the same text from it.
    const fresh = (t) => `${t}\n# run ${Math.random()}\n`;
    const time = async (opts) => {
      const out = [];
      let last = null;
      for (let i = 0; i < runs; i++) {
        const t = fresh(text);
        const t0 = performance.now();
        last = await window.peerauth.evaluate(t, opts);
        out.push(performance.now() - t0);
      }
      return { times: out, last };
    };
    const check = await time({ matrix: false });
    const full = await time({ matrix: true });
    const smallText = document.getElementById('input').value;
    const small = [];
    for (let i = 0; i < runs; i++) {
      const t = fresh(smallText);
      const t0 = performance.now();
      await window.peerauth.evaluate(t, {});
      small.push(performance.now() - t0);
    }
    const s = check.last.summary;
    return {
      check: check.times,
      small,
      full: full.times,
      summary: s,
      cells: full.last.matrix.cells.length,
      diagnostics: full.last.diagnostics.length,
      jsonBytes: JSON.stringify(full.last).length,
      userAgent: navigator.userAgent,
    };
  }, { text, runs: RUNS });

  // The whole page: evaluate, render diagnostics, table and matrix (the page's own
  // `timings.total`), and until the browser has laid out and painted the result.
  const pageTotals = [];
  const painted = [];
  for (let i = 0; i < 4; i++) {
    const [total, paint] = await page.evaluate((t) => new Promise((ok) => {
      const input = document.getElementById('input');
      input.value = `${t}\n# run ${Math.random()}\n`;
      const before = document.body.dataset.evaluations;
      const observer = new MutationObserver(() => {
        if (document.body.dataset.evaluations === before) return;
        observer.disconnect();
        const done = performance.now();
        const { total } = JSON.parse(document.body.dataset.timings);
        requestAnimationFrame(() => setTimeout(() => ok([total, total + performance.now() - done]), 0));
      });
      observer.observe(document.body, { attributes: true });
      input.dispatchEvent(new Event('input'));
    }), text);
    if (i > 0) {
      pageTotals.push(total);
      painted.push(paint);
    }
  }

  const wasm = readFileSync(join(WEB, 'pkg', 'peerauth_web_bg.wasm'));
  const gz = gzipSync(wasm, { level: 9 }).length;
  const chrome = result.userAgent.match(/Chrome\/([\d.]+)/)?.[1] ?? 'unknown';
  const fmt = (x) => x.toFixed(1);
  console.log(`Input: ${result.summary.peer_authentications} PeerAuthentications (of ${POLICIES} generated), ` +
    `${result.summary.workloads} workloads, ${result.summary.services} Services, ${(text.length / 1024).toFixed(0)} KiB of YAML; ` +
    `${result.diagnostics} diagnostics, ${result.cells} matrix cells, ${(result.jsonBytes / 1024).toFixed(0)} KiB of result JSON.`);
  console.log('');
  console.log('| what (in Chromium; worker round trip and JSON.parse included) | median | min | max |');
  console.log('|---|---|---|---|');
  for (const [name, xs] of [
    ['the default example (shop: 6 workloads, 2 policies), everything', result.small],
    ['load + validate + analyse + describe (`matrix: false`)', result.check],
    ['… plus the reachability matrix (the page\'s default)', result.full],
    ['the page: evaluate + build the DOM (matrix drawn up to 3,000 cells)', pageTotals],
    ['the page: … until laid out and painted', painted],
  ]) {
    console.log(`| ${name} | ${fmt(median(xs))} ms | ${fmt(Math.min(...xs))} ms | ${fmt(Math.max(...xs))} ms |`);
  }
  console.log('');
  console.log(`\`peerauth_web_bg.wasm\`: ${wasm.length} bytes (${(wasm.length / 1024).toFixed(0)} KiB), ` +
    `${gz} bytes gzip -9 (${(gz / 1024).toFixed(0)} KiB).`);
  console.log(`Chromium ${chrome} headless; ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}; ` +
    `median of ${RUNS} runs after three warm-up runs (page: 3 runs after one); ${new Date().toISOString().slice(0, 10)}.`);
} finally {
  await browser.close();
  await server.close();
}
