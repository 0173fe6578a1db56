// The checker runs here, off the page's main thread: typing stays responsive while a
// large input is evaluated, and a crashed module is dropped with its worker.
import init, { evaluate, version, selfTestPanic } from './pkg/peerauth_web.js';

let lastPanic = null;
// The Rust panic hook calls this just before the module aborts.
globalThis.peerauthOnPanic = (message) => {
  lastPanic = message;
};

const ready = init().then(
  (wasm) => {
    // The module's linear memory, for the browser benchmark (tests/browser/bench.mjs --scale).
    globalThis.peerauthWasmBytes = () => wasm.memory.buffer.byteLength;
    postMessage({ type: 'ready', version: version() });
  },
  (err) => postMessage({ type: 'load-error', message: String(err && err.message ? err.message : err) }),
);

onmessage = async ({ data }) => {
  await ready;
  lastPanic = null;
  try {
    if (data.type === 'panic') selfTestPanic();
    const started = performance.now();
    const json = evaluate(data.text, data.options);
    postMessage({ type: 'result', id: data.id, json, ms: performance.now() - started });
  } catch (err) {
    postMessage({ type: 'crash', id: data.id, message: lastPanic ?? String(err && err.message ? err.message : err) });
  }
};
