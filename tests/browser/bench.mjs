// Benchmark (not a test): how long the page's checker takes in headless Chromium
// on 1,000 PeerAuthentications × 100 workloads, and how big the module is.
// Run: `bash wasm-web/build.sh && cd tests/browser && node bench.mjs`.
// Prints a Markdown section for BENCHMARKS.md; `--print-input` prints the generated YAML instead.
// `--scale [--tabs N] [--pastes N]`: issue 18's 5,000-workload cluster pasted into the
// page (the first paste into a new tab and later ones apart). `--ab <dir A> <dir B> [--pairs N]`: two builds of the
// page (e.g. one from `PEERAUTH_WEB_OUT=<dir> bash wasm-web/build.sh` in a checkout of an
// older commit) timed in turn on the 1,000 × 100 input, with the per-pair ratio.
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
  // Exit once written: exiting right after `write` cuts a pipe's copy at 128 KiB.
  process.stdout.write(text, () => process.exit(0));
  await new Promise(() => {});
}
// The median; `q` other than 0.5 gives that quantile (nearest rank).
const quantile = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];

// Issue 18's pasted cluster, pasted as a user does: the text on the clipboard,
// the editor emptied, then Ctrl+V, timed from the Ctrl+V keydown until the
// results are built (the page's `evaluations` counter moves) and until the next
// frame after that has been laid out and painted. Each tab is new, so its first
// paste is the first large text that tab, its layout and its wasm ever see; the
// later pastes in the same tab replace a text of the same size.
async function scaleRun({ tabs = 3, pastes = 3 } = {}) {
  const server = await serve();
  const browser = await launch();
  const runs = [];
  try {
    for (let tab = 1; tab <= tabs; tab++) {
      // A context of its own: nothing an earlier tab's renderer learnt carries over.
      const context = await browser.newContext();
      await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
      const page = await context.newPage();
      await page.goto(server.url);
      await page.waitForFunction(() => document.body.dataset.status === 'ready');
      const cdp = await context.newCDPSession(page);
      for (let paste = 1; paste <= pastes; paste++) {
        const pasted = `${text}\n# run ${Math.random()}\n`;
        await page.evaluate((t) => navigator.clipboard.writeText(t), pasted);
        // (Builds before the view have no #viewer: their textarea is emptied.)
        if (await page.locator('#viewer').isVisible()) {
          // A large text is in the page's read-only view: Ctrl+A there marks it
          // all, and the paste replaces it, as a user would.
          await page.focus('#viewer');
          await page.keyboard.press('Control+A');
        } else {
          // Emptied rather than Ctrl+A: Chromium's select-all of a large text in
          // the textarea takes seconds (it copies the selection to the selection
          // clipboard), outside the page.
          await page.locator('#input').evaluate((input) => { input.value = ''; });
          await page.focus('#input');
        }
        await page.evaluate(() => {
          window.benchPaste = new Promise((ok) => {
            let t0 = null;
            addEventListener('keydown', () => { t0 = performance.now(); }, { capture: true, once: true });
            const before = document.body.dataset.evaluations;
            const observer = new MutationObserver(() => {
              if (document.body.dataset.evaluations === before || document.body.dataset.pending) return;
              observer.disconnect();
              const dom = performance.now() - t0;
              const timings = JSON.parse(document.body.dataset.timings);
              requestAnimationFrame(() => setTimeout(() => ok({
                dom, painted: performance.now() - t0, timings, length: (window.peerauth.text?.() ?? document.getElementById('input').value).length,
              }), 0));
            });
            observer.observe(document.body, { attributes: true });
          });
        });
        await page.keyboard.press('Control+V');
        const r = await page.evaluate(() => window.benchPaste);
        if (r.length !== pasted.length) throw new Error(`the editor holds ${r.length} characters, not the ${pasted.length} pasted`);
        await cdp.send('HeapProfiler.collectGarbage');
        const heap = await cdp.send('Runtime.getHeapUsage');
        const wasmBytes = await page.workers()[0]?.evaluate(() => globalThis.peerauthWasmBytes?.() ?? 0);
        const shown = await page.evaluate(() => ({
          groups: document.querySelectorAll('#matrix tbody tr[data-client-namespace]').length,
          caption: document.querySelector('#matrix caption')?.textContent ?? '',
        }));
        runs.push({ tab, paste, ...r, heap: heap.usedSize, wasmBytes, shown });
      }
      await context.close();
    }
  } finally {
    await browser.close();
    await server.close();
  }
  const mb = (b) => (b / 1048576).toFixed(0);
  const ms = (x) => `${x.toFixed(0)} ms`;
  const lines = text.split('\n').length;
  console.log(`Input: ${(text.length / 1024).toFixed(0)} KiB of YAML, ${lines.toLocaleString('en')} lines ` +
    '(5,000 workloads, 5,000 Services), pasted with Ctrl+V from the clipboard into the emptied editor (into the read-only view after Ctrl+A, once it shows a large text); ' +
    `${tabs} new tabs, ${pastes} pastes each; ${new Date().toISOString().slice(0, 16)}Z, load average ${os.loadavg()[0].toFixed(2)} at the end.`);
  console.log('');
  console.log('| tab.paste | Ctrl+V → results built | → painted | evaluation (posted → answer handled) | wasm | results drawn (`total` − evaluation) | page JS heap (after GC) | worker wasm memory | pairs drawn |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of runs) {
    const t = r.timings;
    console.log(`| ${r.tab}.${r.paste}${r.paste === 1 ? ' (first)' : ''} | ${ms(r.dom)} | ${ms(r.painted)} | ${ms(t.evaluate)} | ${ms(t.wasm)} | ` +
      `${ms(t.total - t.evaluate)} | ${mb(r.heap)} MB | ${mb(r.wasmBytes)} MB | ${r.shown.groups} |`);
  }
  const first = runs.filter((r) => r.paste === 1);
  const later = runs.filter((r) => r.paste > 1);
  for (const [name, rs] of [[`first paste into a tab (median of ${first.length})`, first], [`later pastes (median of ${later.length})`, later]]) {
    if (rs.length === 0) continue;
    const m = (f) => ms(quantile(rs.map(f), 0.5));
    console.log(`| **${name}** | **${m((r) => r.dom)}** | **${m((r) => r.painted)}** | ${m((r) => r.timings.evaluate)} | ` +
      `${m((r) => r.timings.wasm)} | ${m((r) => r.timings.total - r.timings.evaluate)} | | | |`);
  }
  console.log('');
  console.log(`first pastes painted: ${first.map((r) => ms(r.painted)).join(', ')}; later: ${later.map((r) => ms(r.painted)).join(', ')}`);
  console.log(`timings of the last paste (ms; bytes: the result JSON): ${JSON.stringify(runs.at(-1).timings)}`);
  console.log(`caption: ${runs.at(-1).shown.caption}`);
}

// `--ab <dirA> <dirB>`: two builds of the page in one browser, each in its own
// tab, timed in turn A, B, A, B, … on the 1,000 × 100 input with the matrix (the
// "plus the reachability matrix" row). Alternating shares the machine's load
// between them, so the per-pair ratio B/A says which is faster where a median
// of separate runs cannot on a noisy machine.
async function abRun(dirA, dirB, { pairs = 100, warmups = 3 } = {}) {
  const servers = [await serve(dirA), await serve(dirB)];
  const browser = await launch();
  const times = [[], []];
  let userAgent = '';
  try {
    const pages = [];
    for (const server of servers) {
      const context = await browser.newContext();
      const page = await context.newPage();
      await page.goto(server.url);
      await page.waitForFunction(() => document.body.dataset.status === 'ready');
      pages.push(page);
    }
    userAgent = await pages[0].evaluate(() => navigator.userAgent);
    const once = (page, label) => page.evaluate(async (t) => {
      const t0 = performance.now();
      const result = await window.peerauth.evaluate(t, { matrix: true });
      const ms = performance.now() - t0;
      if (!result?.matrix) throw new Error('no matrix in the result');
      return ms;
    }, `${text}\n# ${label} ${Math.random()}\n`);
    for (let i = 0; i < warmups; i++) for (const page of pages) await once(page, 'warm-up');
    for (let i = 0; i < pairs; i++) {
      for (const b of [0, 1]) times[b].push(await once(pages[b], 'run'));
    }
  } finally {
    await browser.close();
    for (const server of servers) await server.close();
  }
  const ratios = times[0].map((a, i) => times[1][i] / a);
  // Distribution-free 95 % interval of the median ratio: order statistics k and
  // n + 1 − k, k the largest with P(Binomial(n, ½) < k) ≤ 2.5 %.
  const sorted = [...ratios].sort((a, b) => a - b);
  const n = sorted.length;
  let k = 0;
  let cdf = 0;
  let term = 0.5 ** n;
  for (let j = 0; j < n; j++) {
    if (cdf + term > 0.025) break;
    cdf += term;
    k = j + 1;
    term = (term * (n - j)) / (j + 1);
  }
  const fmt = (x) => x.toFixed(1);
  const size = (dir) => readFileSync(join(dir, 'pkg', 'peerauth_web_bg.wasm')).length;
  console.log(`A/B on ${POLICIES.toLocaleString('en')} policies × ${WORKLOADS} workloads with the matrix ` +
    `(\`await window.peerauth.evaluate(text, { matrix: true })\`: worker round trip and JSON.parse): ` +
    `${pairs} pairs, A then B, after ${warmups} warm-up runs each; ${new Date().toISOString().slice(0, 16)}Z, ` +
    `load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} at the end; Chromium ${userAgent.match(/Chrome\/([\d.]+)/)?.[1] ?? '?'}.`);
  console.log('');
  console.log('| build | `.wasm` | median | p25–p75 | min–max |');
  console.log('|---|---:|---:|---|---|');
  [dirA, dirB].forEach((dir, b) => {
    const xs = times[b];
    console.log(`| ${'AB'[b]}: ${dir} | ${size(dir)} B | **${fmt(quantile(xs, 0.5))} ms** | ${fmt(quantile(xs, 0.25))}–${fmt(quantile(xs, 0.75))} ms | ` +
      `${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))} ms |`);
  });
  console.log('');
  console.log(`Per-pair ratio B/A: median **${sorted[Math.floor(n / 2)].toFixed(3)}** (95 % interval ` +
    `${k > 0 ? `${sorted[k - 1].toFixed(3)}–${sorted[n - k].toFixed(3)}` : 'n/a, too few pairs'}; p25–p75 ` +
    `${quantile(ratios, 0.25).toFixed(3)}–${quantile(ratios, 0.75).toFixed(3)}); B faster in ${ratios.filter((r) => r < 1).length} of ${n} pairs.`);
}

const abAt = process.argv.indexOf('--ab');
if (abAt !== -1) {
  const [dirA, dirB] = process.argv.slice(abAt + 1, abAt + 3);
  if (!dirA || !dirB) throw new Error('usage: node bench.mjs --ab <page dir A> <page dir B> [--pairs N]');
  const pairsAt = process.argv.indexOf('--pairs');
  await abRun(dirA, dirB, { pairs: pairsAt === -1 ? 100 : Number(process.argv[pairsAt + 1]) });
  process.exit(0);
}
if (scale) {
  const option = (name, fallback) => {
    const at = process.argv.indexOf(name);
    return at === -1 ? fallback : Number(process.argv[at + 1]);
  };
  await scaleRun({ tabs: option('--tabs', 3), pastes: option('--pastes', 3) });
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
