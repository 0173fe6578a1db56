// The page: an editor, and three views of what `policy` (compiled to wasm) says
// about its text. Everything runs in this tab; the URL fragment carries the state.
import { EXAMPLES } from './examples.js';

const DEBOUNCE_MS = 200;
// Chromium accepts URLs of megabytes, but chat tools and proxies cut much
// earlier; past this the "Copy link" button warns.
const SHARE_URL_WARN = 8000;
// Laying out a 100 × 100 table takes seconds; past this many cells only the first
// rows are drawn until the reader asks for all of them.
const MATRIX_CELL_BUDGET = 3000;

const $ = (id) => document.getElementById(id);
const input = $('input');

let timer = null;
let evaluations = 0;
let showAllClients = false;
let lastResult = null;

// How many workloads (effective modes) and namespace pairs (grouped matrix) the
// module sends: a pasted cluster has thousands and hundreds of thousands, and
// the page draws only these until the reader asks for more. `null` = all.
const MODES_WORKLOAD_BUDGET = 500;
const MATRIX_GROUP_BUDGET = 1000;
const shown = { workloads: MODES_WORKLOAD_BUDGET, groups: MATRIX_GROUP_BUDGET };

// "Show more": the same text with larger limits. The worker keeps its last
// evaluation, so this only writes the longer JSON.
function showMore(list, budget) {
  shown[list] = budget === null || shown[list] === null ? null : shown[list] + budget;
  evaluateNow();
}

// ---- the checker, in a worker ----------------------------------------------------

let worker = null;
let nextId = 0;
const waiting = new Map();

// Resolves once the worker has instantiated the wasm module.
function startWorker() {
  worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  return new Promise((ok, fail) => {
    worker.onmessage = ({ data }) => {
      if (data.type === 'ready') {
        $('version').textContent = data.version;
        ok();
      } else if (data.type === 'load-error') {
        fail(new Error(data.message));
      } else {
        waiting.get(data.id)?.(data);
        waiting.delete(data.id);
      }
    };
    worker.onerror = (e) => fail(new Error(e.message || 'the checker could not start'));
  });
}

function ask(message) {
  const id = ++nextId;
  return new Promise((ok) => {
    waiting.set(id, ok);
    worker.postMessage({ ...message, id });
  });
}

// A module that trapped may hold broken state: drop the worker, start a new one.
function restartWorker(why) {
  showFault(`The checker crashed (${why}). This is a bug in peerauth; the page has restarted the ` +
    'checker; edit the text to try again. Please report the input that caused it.', true);
  worker.terminate();
  for (const reply of waiting.values()) reply({ type: 'crash', message: 'restarted' });
  waiting.clear();
  return startWorker().catch((e) => showFault(`Could not restart the checker: ${e.message}`));
}

function options() {
  return {
    rootNamespace: $('root-namespace').value.trim() || 'istio-system',
    autoMtls: $('auto-mtls').checked,
  };
}

// Resolves to the parsed evaluation, or to null after showing why there is none.
async function evaluateText(text, opts) {
  if (!worker) return null;
  const reply = await ask({ type: 'evaluate', text, options: JSON.stringify(opts) });
  if (reply.type === 'crash') {
    await restartWorker(reply.message);
    return null;
  }
  timings.wasm = Math.round(reply.ms * 10) / 10;
  timings.bytes = reply.json.length;
  return timed('parse', () => JSON.parse(reply.json));
}

function showFault(message, untilNextEvaluation = false) {
  const box = $('fault');
  box.textContent = message;
  box.hidden = false;
  box.dataset.untilNextEvaluation = String(untilNextEvaluation);
}

function clearCrashFault() {
  const box = $('fault');
  if (box.dataset.untilNextEvaluation === 'true') box.hidden = true;
}

// ---- editor -----------------------------------------------------------------

function computeLineStarts(text) {
  const starts = [0];
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) starts.push(i + 1);
  return starts;
}

function countLines(text) {
  let n = 1;
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) n += 1;
  return n;
}

// The gutter draws only the line numbers in view (and a few more either side):
// a pasted cluster has 52,624 lines, and laying out that many numbers added
// ~300 ms to the first paste into a tab. Lines are a fixed height, so the lines
// in view follow from the textarea's scrollTop.
const LINE_HEIGHT = 20; // --editor-line in style.css
const EDITOR_PAD = 8; // the textarea's padding-top
const GUTTER_OVERSCAN = 5;
const gutterNumbers = $('gutter-numbers');
const gutterMarks = $('gutter-marks');
let lineCount = 1;
// line → 'bad' | 'warn', from the last evaluation.
let marks = new Map();

// The textarea's scrollTop and height as its scroll events and ResizeObserver
// report them: reading them here would make Chromium lay out a freshly pasted
// text at once (0.5-0.9 s for a 5,000-workload cluster) instead of in its frame.
let scrolled = 0;
let viewHeight = 0;

// The top of 1-based `line` in the gutter, which itself never scrolls.
const lineTop = (line) => EDITOR_PAD + (line - 1) * LINE_HEIGHT - scrolled;

// The 1-based lines in view, and a few more either side.
function linesInView() {
  const first = Math.max(1, Math.floor((scrolled - EDITOR_PAD) / LINE_HEIGHT) + 1 - GUTTER_OVERSCAN);
  const last = Math.min(lineCount,
    Math.floor((scrolled - EDITOR_PAD + viewHeight) / LINE_HEIGHT) + 1 + GUTTER_OVERSCAN);
  return [first, last];
}

function renderGutterView() {
  const [first, last] = linesInView();
  let text = '';
  for (let n = first; n <= last; n++) text += `${n}\n`;
  gutterNumbers.textContent = text;
  gutterNumbers.style.transform = `translateY(${lineTop(first)}px)`;
  // style.css makes room for six digits: a gutter that widens narrows the
  // textarea, which Chromium then lays out again (0.4 s for the pasted cluster).
  const digits = String(lineCount).length;
  gutterNumbers.style.minWidth = digits > 6 ? `calc(${digits}ch + 14px)` : '';
  const spans = [];
  for (const [line, kind] of marks) {
    if (line < first || line > last) continue;
    const span = document.createElement('span');
    span.className = `mark ${kind}`;
    span.style.top = `${lineTop(line)}px`;
    span.textContent = String(line);
    spans.push(span);
  }
  gutterMarks.replaceChildren(...spans);
}

function renderLinesInView() {
  renderGutterView();
  renderView();
}

let gutterFrame = 0;
function scheduleGutter() {
  if (gutterFrame) return;
  gutterFrame = requestAnimationFrame(() => {
    gutterFrame = 0;
    renderLinesInView();
  });
}

// Line numbers change only when the line count does; cheap enough to run on every key.
function renderLineNumbers(text) {
  const count = countLines(text);
  if (count === lineCount) return;
  lineCount = count;
  scheduleGutter();
}

// Marks from an evaluation of `text` (the editor may hold newer text by now).
function renderGutter(newMarks, text) {
  lineCount = countLines(text);
  marks = new Map([...newMarks].filter(([line]) => line <= lineCount));
  scheduleGutter();
}

input.addEventListener('scroll', () => {
  scrolled = input.scrollTop;
  renderGutterView();
});
// The textarea and the view share the editor's box; the hidden one reports 0.
const resized = new ResizeObserver((entries) => {
  for (const { target, contentRect } of entries) {
    if (contentRect.height > 0) viewHeight = contentRect.height + (target === input ? 2 * EDITOR_PAD : 0);
  }
  scheduleGutter();
});
resized.observe(input);

// ---- the read-only view of a large text --------------------------------------------

// A textarea lays out all of its text: for a pasted 5,000-workload cluster
// (52,624 lines) that is 1.0-1.2 s of Chromium's main thread, more than the
// evaluation and the results together (first paste painted 1.7 s with the text
// in the textarea, 0.6 s without: tests/browser/bench.mjs --scale). A text over
// this size that arrives at once (a paste, opened or dropped files, a link) is
// shown in a view that puts only the lines in view into the DOM; "Edit as text"
// moves it into the textarea.
const LARGE_TEXT = 100000;
// A longer line is cut in the view: one megabyte-long line (a minified JSON
// document) would cost the view what the textarea costs.
const VIEW_LINE_LIMIT = 4000;
const viewer = $('viewer');
const viewerLines = $('viewer-lines');
const viewerLine = $('viewer-line');
// The text the view shows, or null while the textarea holds the text.
let viewing = null;
let viewStarts = [0];

const currentText = () => viewing ?? input.value;

function viewLineText(n) {
  const start = viewStarts[n - 1];
  const end = n < viewStarts.length ? viewStarts[n] - 1 : viewing.length;
  if (end - start <= VIEW_LINE_LIMIT) return viewing.slice(start, end);
  return `${viewing.slice(start, start + VIEW_LINE_LIMIT)} … (${(end - start - VIEW_LINE_LIMIT).toLocaleString('en')} more characters: Edit as text to see them)`;
}

function renderView() {
  if (viewing === null) return;
  const [first, inView] = linesInView();
  // lineCount follows the last evaluated text, which may be older than the view's.
  const last = Math.min(inView, viewStarts.length);
  let text = '';
  for (let n = first; n <= last; n++) text += `${viewLineText(n)}\n`;
  viewerLines.textContent = text;
  viewerLines.style.top = `${EDITOR_PAD + (first - 1) * LINE_HEIGHT}px`;
}

function showView(text) {
  const focused = document.activeElement === input || document.activeElement === viewer;
  const shownBefore = viewing !== null;
  viewing = text;
  viewStarts = computeLineStarts(text);
  let widest = 0;
  for (let n = 1; n <= viewStarts.length; n++) {
    const end = n < viewStarts.length ? viewStarts[n] - 1 : text.length;
    widest = Math.max(widest, end - viewStarts[n - 1]);
  }
  // Room for a cut line's note, and the textarea's 10 px padding either side.
  const width = `calc(${Math.min(widest, VIEW_LINE_LIMIT + 80)}ch + 20px)`;
  const size = $('viewer-size');
  size.style.height = `${2 * EDITOR_PAD + viewStarts.length * LINE_HEIGHT}px`;
  size.style.width = width;
  viewerLine.style.width = width;
  viewerLine.hidden = true;
  delete viewer.dataset.line;
  viewer.classList.remove('all');
  found = -1;
  findResult.value = '';
  lineCount = viewStarts.length;
  input.value = '';
  input.hidden = true;
  viewer.hidden = false;
  // A view that was hidden starts at the top; one in view is moved there.
  if (shownBefore) viewer.scrollTo(0, 0);
  scrolled = 0;
  $('large-lines').textContent = `${lineCount.toLocaleString('en')} lines`;
  $('large-note').hidden = false;
  if (focused) viewer.focus({ preventScroll: true });
  renderLinesInView();
}

// `keepScroll`: the line at the top of the view stays at the top of the textarea.
function showEditor(text, { keepScroll = false } = {}) {
  const focused = document.activeElement === viewer || document.activeElement === input;
  const top = viewing === null ? 0 : scrolled;
  viewing = null;
  viewStarts = [0];
  viewer.hidden = true;
  viewerLines.textContent = '';
  $('large-note').hidden = true;
  find.hidden = true;
  input.hidden = false;
  input.value = text;
  editedLength = text.length;
  lineCount = countLines(text);
  if (focused) input.focus({ preventScroll: true });
  input.scrollTop = keepScroll ? top : 0;
  scrolled = input.scrollTop;
  scheduleGutter();
}

// Where the text goes: the view when it is large, else the textarea.
function setText(text) {
  if (text.length > LARGE_TEXT) showView(text);
  else showEditor(text);
}

// The one step Ctrl+Z takes back when the page, not the browser, replaced the
// text (a large paste, or a paste or Delete in the view): the text before, and
// the text it made, so an edit since then leaves Ctrl+Z to the browser.
let undoStep = null;

function replaceText(text) {
  undoStep = { before: currentText(), after: text };
  // The worker gets the text before the page lays anything out.
  evaluateNow(text);
  setText(text);
  forgetEditedExample();
}

function undoReplace() {
  if (!undoStep || currentText() !== undoStep.after) return false;
  const { before } = undoStep;
  undoStep = null;
  evaluateNow(before);
  setText(before);
  forgetEditedExample();
  return true;
}

const isUndo = (e) => (e.ctrlKey || e.metaKey) && !e.shiftKey && !e.altKey && e.key.toLowerCase() === 'z';
input.addEventListener('keydown', (e) => {
  if (isUndo(e) && undoReplace()) e.preventDefault();
});

viewer.addEventListener('scroll', () => {
  scrolled = viewer.scrollTop;
  renderLinesInView();
});
resized.observe(viewer);
// Ctrl+A marks the whole text (the class draws it as selected), for Ctrl+C,
// Delete or a paste over it; only the lines in view are in the DOM, so the page
// copies the text itself (Chromium fires copy on the focused view either way).
viewer.addEventListener('keydown', (e) => {
  const key = e.key.toLowerCase();
  if ((e.ctrlKey || e.metaKey) && key === 'a') {
    e.preventDefault();
    viewer.classList.add('all');
  } else if (isUndo(e)) {
    if (undoReplace()) e.preventDefault();
  } else if ((key === 'delete' || key === 'backspace') && viewer.classList.contains('all')) {
    e.preventDefault();
    replaceText('');
  }
});
viewer.addEventListener('mousedown', () => viewer.classList.remove('all'));
viewer.addEventListener('copy', (e) => {
  if (!viewer.classList.contains('all')) return;
  e.preventDefault();
  e.clipboardData.setData('text/plain', viewing);
});
// A paste into the view replaces the whole text: it has no caret to insert at.
viewer.addEventListener('paste', (e) => {
  e.preventDefault();
  // An image or a file on the clipboard has no text: nothing to replace with.
  const pasted = e.clipboardData?.getData('text/plain') ?? '';
  if (pasted) replaceText(pasted.replace(/\r\n?/g, '\n'));
});
// Highlight 1-based `line` in the view and scroll it a third of the way down.
function markViewLine(line) {
  const n = Math.min(Math.max(line, 1), viewStarts.length);
  viewer.classList.remove('all');
  viewer.dataset.line = String(n);
  viewerLine.style.top = `${EDITOR_PAD + (n - 1) * LINE_HEIGHT}px`;
  viewerLine.hidden = false;
  viewer.scrollTop = Math.max(0, (n - 1) * LINE_HEIGHT - viewHeight / 3);
  scrolled = viewer.scrollTop;
  renderLinesInView();
}

// The browser's find sees only the lines the view has drawn, so Ctrl+F in the
// view opens the page's own: case-insensitive, Enter for the next match and
// Shift+Enter for the previous, both wrapping; Escape goes back to the view.
const find = $('view-find');
const findText = $('view-find-text');
const findResult = $('view-find-result');
// The lower-cased text the last search ran on, and the last match's offset.
let findIn = { text: null, lower: '' };
let found = -1;

function findNext(backwards) {
  const term = findText.value.toLowerCase();
  if (!term || viewing === null) {
    findResult.value = '';
    return;
  }
  if (findIn.text !== viewing) findIn = { text: viewing, lower: viewing.toLowerCase() };
  const { lower } = findIn;
  // lastIndexOf clamps a negative start to 0, which would find a match at 0 again.
  let at;
  if (backwards) at = found > 0 ? lower.lastIndexOf(term, found - 1) : -1;
  else at = lower.indexOf(term, found + 1);
  if (at === -1) at = backwards ? lower.lastIndexOf(term) : lower.indexOf(term);
  found = at;
  if (at === -1) {
    findResult.value = 'no match';
    return;
  }
  let count = 0;
  let index = 0;
  for (let i = lower.indexOf(term); i !== -1; i = lower.indexOf(term, i + 1)) {
    count += 1;
    if (i === at) index = count;
  }
  // The line holding offset `at`: the last line start at or before it.
  let lo = 0;
  let hi = viewStarts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (viewStarts[mid] <= at) lo = mid;
    else hi = mid - 1;
  }
  markViewLine(lo + 1);
  findResult.value = `${index} of ${count} · line ${lo + 1}`;
}

viewer.addEventListener('keydown', (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === 'f') {
    e.preventDefault();
    find.hidden = false;
    findText.focus();
    findText.select();
  }
});
find.addEventListener('submit', (e) => e.preventDefault());
findText.addEventListener('input', () => {
  found = -1;
  findNext(false);
});
findText.addEventListener('keydown', (e) => {
  if (e.key === 'Enter') {
    e.preventDefault();
    findNext(e.shiftKey);
  } else if (e.key === 'Escape') {
    e.preventDefault();
    find.hidden = true;
    viewer.focus({ preventScroll: true });
  }
});

$('edit-large').addEventListener('click', () => {
  viewer.focus({ preventScroll: true });
  showEditor(viewing, { keepScroll: true });
});

// Select the whole of 1-based `line` and scroll it into view.
function selectLine(line) {
  if (viewing !== null) {
    viewer.focus({ preventScroll: true });
    markViewLine(line);
    return;
  }
  const starts = computeLineStarts(input.value);
  const n = Math.min(Math.max(line, 1), starts.length);
  const start = starts[n - 1];
  let end = input.value.indexOf('\n', start);
  if (end === -1) end = input.value.length;
  input.focus();
  input.setSelectionRange(start, end);
  input.scrollTop = Math.max(0, (n - 1) * LINE_HEIGHT - viewHeight / 3);
  scrolled = input.scrollTop;
  renderGutterView();
}

// Chromium's own paste into a textarea grows much faster than the text: pasted
// over the selected example (Ctrl+A, Ctrl+V), 50 KB took 46 ms, 400 KB 1.7 s and
// the 1.9 MB of a 5,000-workload cluster 39 s before the page saw an input event.
// A paste over the view's size is taken by the page, into the view; Ctrl+Z
// takes it back (undoReplace).
input.addEventListener('paste', (e) => {
  const pasted = e.clipboardData?.getData('text/plain') ?? '';
  if (pasted.length <= LARGE_TEXT) return;
  e.preventDefault();
  const { selectionStart: from, selectionEnd: to, value } = input;
  replaceText(value.slice(0, from) + pasted.replace(/\r\n?/g, '\n') + value.slice(to));
});

// ---- rendering ----------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function renderSummary(result) {
  const s = result.summary ?? {};
  const box = $('summary');
  box.replaceChildren(
    el('span', { class: s.errors ? 'count-error' : '' }, plural(s.errors ?? 0, 'error')), ' · ',
    el('span', { class: s.warnings ? 'count-warning' : '' }, plural(s.warnings ?? 0, 'warning')), ' · ',
    `${plural(s.peer_authentications ?? 0, 'PeerAuthentication')}, ${plural(s.destination_rules ?? 0, 'DestinationRule')}, ` +
      `${plural(s.workloads ?? 0, 'workload')}, ${plural(s.services ?? 0, 'Service')}`,
    result.skipped?.length ? ` · ${result.skipped.length} other documents skipped` : '',
  );
}

// Drawing 2,000 findings of a pasted cluster took 80 ms; the gutter still marks
// every line.
const DIAGNOSTICS_BUDGET = 500;
let showAllDiagnostics = false;
function renderDiagnostics(result) {
  const list = $('diagnostics');
  const all = result.diagnostics;
  const drawn = showAllDiagnostics ? all : all.slice(0, DIAGNOSTICS_BUDGET);
  const items = drawn.map((d) => {
    const loc = d.location;
    const where = loc ? `line ${loc.line}` + (loc.document !== undefined ? ` · doc ${loc.document + 1}` : '') : '';
    const code = d.istio_code ? `${d.code} (${d.istio_code})` : d.code;
    const button = el('button', {
      type: 'button',
      class: `diag ${d.severity}`,
      dataset: { code: d.code, severity: d.severity, line: loc ? String(loc.line) : '' },
      'aria-label': `${d.severity} ${d.code}${where ? ', ' + where : ''}: ${d.message}`,
      onclick: loc ? () => selectLine(loc.line) : undefined,
      disabled: !loc,
    },
    el('span', { class: 'sev' }, d.severity),
    el('span', { class: 'code' }, code),
    el('span', { class: 'where' }, where),
    el('span', { class: 'message' }, d.message),
    d.hint ? el('span', { class: 'hint' }, d.hint) : null);
    return el('li', {}, button);
  });
  if (items.length === 0) items.push(el('li', { class: 'empty' }, 'No problems found.'));
  if (drawn.length < all.length) {
    items.push(el('li', { class: 'more' },
      `${drawn.length} of ${all.length} findings shown. `,
      el('button', {
        type: 'button',
        onclick: () => {
          showAllDiagnostics = true;
          if (lastResult) renderDiagnostics(lastResult);
        },
      }, `Show all ${all.length}`)));
  }
  list.replaceChildren(...items);
}

function policyLink(policy) {
  const label = `${policy.name}.${policy.namespace}`;
  const line = policy.location?.line;
  return line
    ? el('button', { type: 'button', class: 'link', title: `Go to line ${line}`, onclick: () => selectLine(line) }, label)
    : el('code', {}, label);
}

function decidedBy(resolution) {
  if (resolution.decided_at === 'default') {
    return [el('span', { title: 'No PeerAuthentication applies: Istio defaults to PERMISSIVE' }, 'Istio default')];
  }
  const step = [...resolution.steps].reverse().find((s) => s.level === resolution.decided_at && s.policy);
  return step ? [`${resolution.decided_at}: `, policyLink(step.policy)] : [resolution.decided_at];
}

function ignoredList(resolution) {
  if (!resolution.ignored?.length) return null;
  return el('ul', { class: 'ignored' }, resolution.ignored.map((i) =>
    el('li', {}, policyLink(i.policy), ` — ${i.message}`)));
}

// The workload's data plane: sidecar, ambient (ztunnel) or none. Sidecar-only
// meshes draw exactly the badges they always did.
function dataPlaneBadge(w) {
  if (w.ambient) return el('span', { class: 'badge ambient', title: 'Captured by ztunnel: mesh traffic is HBONE mTLS' }, 'ambient');
  return el('span', { class: `badge ${w.sidecar ? 'sidecar' : 'no-sidecar'}` }, w.sidecar ? 'sidecar' : 'no sidecar');
}

function modeRow(w, port, resolution, first) {
  const key = `${w.namespace}/${w.name}`;
  return el('tr', {
    class: first ? 'workload-row' : '',
    dataset: { workload: key, port: port === null ? '*' : String(port), mode: resolution.mode, decidedAt: resolution.decided_at },
  },
  first
    ? el('th', { scope: 'row', rowspan: String(1 + Object.keys(w.ports).length) },
      el('span', { class: 'ns' }, `${w.namespace}/`), w.name,
      dataPlaneBadge(w))
    : null,
  el('td', { class: 'port' }, port === null ? 'all ports' : String(port)),
  el('td', { class: `mode mode-${resolution.mode}` }, resolution.mode,
    w.ambient
      ? el('span', { class: 'badge', title: 'ztunnel enforces only STRICT or not; DISABLE is not supported in ambient' }, `ztunnel: ${port === null ? w.ambient.workload : (w.ambient.ports[port] || w.ambient.workload)}`)
      : (w.sidecar ? null : el('span', { class: 'badge', title: 'Without a sidecar nothing enforces this mode: plaintext is accepted' }, 'not enforced'))),
  el('td', { class: 'decided' }, decidedBy(resolution)),
  el('td', {}, ignoredList(resolution)));
}

// A pasted cluster has thousands of workloads: the module sends the first
// `shown.workloads` until more are asked for (laying out every row took seconds at 5,000).
function moreButtons(list, count, total, budget, noun) {
  return [
    `${count} of ${total} ${noun} shown. `,
    total - count > budget
      ? [el('button', { type: 'button', onclick: () => showMore(list, budget) }, `Show ${budget} more`), ' ']
      : null,
    el('button', { type: 'button', onclick: () => showMore(list, null) }, `Show all ${total} (slow)`),
  ];
}

function renderModes(result) {
  const body = $('modes').tBodies[0];
  const rows = [];
  const workloads = result.workloads;
  const total = result.summary.workloads ?? workloads.length;
  for (const w of workloads) {
    rows.push(modeRow(w, null, w.workload, true));
    for (const [port, resolution] of Object.entries(w.ports)) rows.push(modeRow(w, Number(port), resolution, false));
  }
  if (rows.length === 0) {
    rows.push(el('tr', {}, el('td', { colspan: '5', class: 'empty' }, 'No workloads (Deployments, Pods, …) in the input.')));
  }
  if (workloads.length < total) {
    rows.push(el('tr', {}, el('td', { colspan: '5', class: 'more' },
      moreButtons('workloads', workloads.length, total, MODES_WORKLOAD_BUDGET, 'workloads'))));
  }
  body.replaceChildren(...rows);
}

function cellView(cell) {
  if (cell.outcome === 'allowed') {
    return cell.mtls ? ['mtls', '200 · mTLS'] : ['plain', '200 · plain'];
  }
  return cell.outcome === 'reset' ? ['reset', 'reset'] : ['failed', 'fail'];
}

const SENDS = { plaintext: 'plaintext', 'istio-mutual': 'Istio mTLS', 'other-tls': 'non-Istio TLS' };
const RESULTS = {
  allowed: 'the request succeeds',
  reset: 'the connection is reset',
  failed: 'TLS bytes reach a plaintext listener and the request fails',
};

// The sentence `policy` writes for a cell (`Cell::explanation`), from the cell's
// fields: the module sends it only when asked (`explanations: true`), which
// would double the matrix's JSON. The browser test compares the two.
function explain(client, service, cell) {
  const reason = cell.client_reason;
  let why;
  if (reason === 'no-sidecar') why = 'it has no sidecar';
  else if (reason === 'auto-mtls') why = 'of auto mTLS';
  else if (reason === 'auto-mtls-off') why = 'auto mTLS is off and no DestinationRule sets TLS';
  else if (reason === 'ztunnel') {
    why = cell.client_tls === 'istio-mutual'
      ? 'it is ambient: its ztunnel sends HBONE (mTLS) to a destination that accepts it'
      : 'it is ambient and the destination does not take HBONE: its ztunnel passes the connection through';
  } else {
    const rule = reason['destination-rule'];
    why = `DestinationRule ${rule.namespace}/${rule.name} sets ${rule.mode}`;
  }
  const s = service.server;
  let server = s.sidecar ? `${s.name}.${s.namespace} is ${service.server_mode}` : `${s.name}.${s.namespace} has no sidecar`;
  if (s.ambient) {
    // policy's Call::explain_into for a server captured by ztunnel.
    server = `${s.name}.${s.namespace} is ambient, ztunnel ` + (service.server_mode === 'STRICT'
      ? 'rejects connections without a peer identity (STRICT)'
      : 'accepts plaintext (not STRICT; DISABLE is not supported in ambient)');
    if (s.waypoint && cell.client_tls === 'istio-mutual') {
      server += `, through waypoint ${s.waypoint} (L7 policy and WasmPlugins run there; the pod's ztunnel sees the waypoint as the peer)`;
    }
  }
  return `${client.name}.${client.namespace} sends ${SENDS[cell.client_tls]} to ${service.name}.${service.namespace}:${service.port} ` +
    `because ${why}; ${server}, so ${RESULTS[cell.outcome]}`;
}

function renderMatrix(result) {
  const table = $('matrix');
  if (!result.matrix) {
    table.replaceChildren(el('caption', { class: 'empty' }, 'Matrix not computed.'));
    return;
  }
  if (result.matrix.omitted) {
    renderGroups(table, result.matrix);
    return;
  }
  // Contract 3: the matrix names each client and Service port once, and a cell is
  // [client, service, client_tls, client_reason, outcome, mtls(, explanation)].
  const { clients: matrixClients, services } = result.matrix;
  const columns = new Map(services.map((s) => [`${s.namespace}/${s.name}:${s.port}`, s]));
  const columnKeys = [...columns.keys()];
  // Row key → the row's cells by column index.
  const rowOf = new Map(matrixClients.map((c) => [`${c.namespace}/${c.name}`, []]));
  const rowCells = [...rowOf.values()];
  for (const cell of result.matrix.cells) rowCells[cell[0]][cell[1]] = cell;
  if (columns.size === 0 || matrixClients.length === 0) {
    table.replaceChildren(el('caption', { class: 'empty' }, 'Add workloads and Services to see who can reach whom.'));
    return;
  }
  const head = el('tr', {}, el('th', { scope: 'col' }, 'client ↓ / service →'),
    [...columns].map(([col, s]) => el('th', { scope: 'col', dataset: { service: col, serverMode: s.server_mode } },
      el('span', { class: 'ns' }, `${s.namespace}/`), el('br'), `${s.name}:${s.port}`)));
  const maxRows = Math.max(10, Math.floor(MATRIX_CELL_BUDGET / columns.size));
  // Rows come from the matrix's own clients: `workloads` may hold only the first ones.
  const clients = showAllClients ? matrixClients : matrixClients.slice(0, maxRows);
  const rows = clients.map((w) => {
    const client = `${w.namespace}/${w.name}`;
    return el('tr', { dataset: { client } },
      el('th', { scope: 'row' }, el('span', { class: 'ns' }, `${w.namespace}/`), w.name,
        dataPlaneBadge(w)),
      columnKeys.map((col, i) => {
        const found = rowOf.get(client)?.[i];
        if (!found) return el('td', { dataset: { client, service: col, outcome: 'none' } }, el('span', { class: 'cell none' }, '—'));
        const [row, column, clientTls, clientReason, outcome, mtls, explanation] = found;
        const cell = { client_tls: clientTls, client_reason: clientReason, outcome, mtls };
        const service = services[column];
        const [cls, text] = cellView(cell);
        return el('td', {
          dataset: { client, service: col, outcome, mtls: String(mtls), clientTls, serverMode: service.server_mode },
          title: explanation ?? explain(matrixClients[row], service, cell),
        }, el('span', { class: `cell ${cls}` }, text));
      }));
  });
  if (clients.length < matrixClients.length) {
    rows.push(el('tr', {}, el('td', { colspan: String(columns.size + 1), class: 'more' },
      `${clients.length} of ${matrixClients.length} clients shown. `,
      el('button', {
        type: 'button',
        onclick: () => {
          showAllClients = true;
          if (lastResult) renderMatrix(lastResult);
        },
      }, `Show all ${matrixClients.length} (${matrixClients.length * columns.size} cells, slow)`))));
  }
  table.replaceChildren(el('thead', {}, head), el('tbody', {}, rows));
}

// Too many cells to send or draw (a pasted cluster): the module counts them per
// (client namespace, Service namespace) pair instead, [client_ns, service_ns,
// mtls, plaintext, reset, fail], pairs with resets or failures first, and sends
// the first `shown.groups` of them.
function renderGroups(table, matrix) {
  const { totals } = matrix;
  const head = el('tr', {}, ['client namespace', 'service namespace', '200 · mTLS', '200 · plain', 'reset', 'fail']
    .map((h) => el('th', { scope: 'col' }, h)));
  const rows = matrix.groups.map(([clientNs, serviceNs, mtls, plain, reset, fail]) =>
    el('tr', { dataset: { clientNamespace: clientNs, serviceNamespace: serviceNs } },
      el('th', { scope: 'row' }, clientNs), el('th', { scope: 'row' }, serviceNs),
      [[mtls, 'mtls'], [plain, 'plain'], [reset, 'reset'], [fail, 'failed']].map(([n, cls]) =>
        el('td', { dataset: { kind: cls } }, el('span', { class: n > 0 ? `cell ${cls}` : 'cell none' }, String(n))))));
  if (matrix.groups.length < totals.groups) {
    rows.push(el('tr', {}, el('td', { colspan: '6', class: 'more' },
      moreButtons('groups', matrix.groups.length, totals.groups, MATRIX_GROUP_BUDGET, 'namespace pairs'))));
  }
  const caption = el('caption', { class: 'groups' },
    `${totals.cells.toLocaleString('en')} cells (${totals.clients.toLocaleString('en')} clients × ` +
    `${totals.services.toLocaleString('en')} Service ports) are too many to draw; ` +
    `counted per namespace pair, pairs with resets or failures first (${totals.broken_groups} of ${totals.groups}).`);
  table.replaceChildren(caption, el('thead', {}, head), el('tbody', {}, rows));
}

// Milliseconds spent per step of the last evaluation (read by the benchmark).
const timings = {};
function timed(name, fn) {
  const t0 = performance.now();
  const value = fn();
  timings[name] = Math.round((performance.now() - t0) * 10) / 10;
  return value;
}

// The modes and matrix sections skip layout off screen (content-visibility:
// auto), but one that was on screen with the last, small result lays out all of
// a large new one in the next frame before Chromium finds it off screen: 0.25 s
// more on the first paste of a 5,000-workload cluster. Hidden for that frame,
// they are judged off screen without being laid out. Only for a new text: after
// "Show more" the reader is looking at that section.
const offScreenSections = [$('modes').closest('section'), $('matrix').closest('section')];
let renderedText = null;
function render(result, text) {
  lastResult = result;
  const large = text !== renderedText && (result.workloads.length > 100 || Boolean(result.matrix?.omitted));
  renderedText = text;
  if (large) for (const section of offScreenSections) section.style.contentVisibility = 'hidden';
  timed('summary', () => renderSummary(result));
  timed('diagnostics', () => renderDiagnostics(result));
  timed('modes', () => renderModes(result));
  timed('matrix', () => renderMatrix(result));
  timed('gutter', () => renderMarks(result, text));
  if (large) {
    requestAnimationFrame(() => setTimeout(() => {
      for (const section of offScreenSections) section.style.contentVisibility = '';
    }, 0));
  }
}

function renderMarks(result, text) {
  const found = new Map();
  for (const d of result.diagnostics) {
    const line = d.location?.line;
    if (!line) continue;
    if (d.severity === 'error') found.set(line, 'bad');
    else if (d.severity === 'warning' && !found.has(line)) found.set(line, 'warn');
  }
  renderGutter(found, text);
}

// ---- evaluation loop -------------------------------------------------------------

let inFlight = false;
let again = false;
// The text's length at the last input event or evaluation, to tell a paste from a key.
let editedLength = 0;

// `pending` tells tests and the benchmark that a newer evaluation is still to come.
function markPending() {
  if (timer !== null || inFlight) document.body.dataset.pending = 'true';
  else delete document.body.dataset.pending;
}

// Evaluate the current text now (or `upcoming`, the text the editor is about
// to hold). While one evaluation runs in the worker, later calls only note that
// the text changed; the newest text is evaluated next.
async function evaluateNow(upcoming) {
  clearTimeout(timer);
  timer = null;
  if (inFlight) {
    again = true;
    return;
  }
  inFlight = true;
  markPending();
  try {
    do {
      again = false;
      const text = upcoming ?? currentText();
      upcoming = undefined;
      editedLength = text.length;
      const started = performance.now();
      const result = await evaluateText(text, { ...options(), limits: { ...shown } });
      timings.evaluate = Math.round((performance.now() - started) * 10) / 10;
      if (again) continue;
      if (!result) {
        renderGutter(new Map(), text);
        break;
      }
      render(result, text);
      clearCrashFault();
      evaluations += 1;
      timings.total = Math.round((performance.now() - started) * 10) / 10;
      document.body.dataset.status = 'ready';
      document.body.dataset.timings = JSON.stringify(timings);
      document.body.dataset.evaluations = String(evaluations);
      saveToFragment().catch((e) => showFault(`Could not update the link: ${e.message}`));
    } while (again);
  } finally {
    inFlight = false;
    markPending();
  }
}

// Once the text is edited it is no longer the example the menu names.
function forgetEditedExample() {
  const select = $('example');
  if (!select.value) return;
  const ex = EXAMPLES.find((e) => e.id === select.value);
  if (ex && ex.text === currentText()) return;
  select.value = '';
  $('example-description').textContent = 'edited';
  $('example-description').title = '';
}

function scheduleEvaluate() {
  clearTimeout(timer);
  forgetEditedExample();
  renderLineNumbers(currentText());
  timer = setTimeout(() => evaluateNow(), DEBOUNCE_MS);
  markPending();
}

// A paste (or any edit of many characters at once) is evaluated at once rather
// than after the typing pause: the text goes to the worker before anything here
// asks for layout, so the worker evaluates while this thread lays out the new
// text in the textarea (pastes up to LARGE_TEXT; larger ones go to the view).
const LARGE_EDIT = 1000;
input.addEventListener('input', (e) => {
  const large = e.inputType === 'insertFromPaste' || e.inputType === 'insertFromDrop'
    || Math.abs(input.value.length - editedLength) >= LARGE_EDIT;
  editedLength = input.value.length;
  if (!large) {
    scheduleEvaluate();
    return;
  }
  evaluateNow();
  forgetEditedExample();
  renderLineNumbers(input.value);
});
$('root-namespace').addEventListener('input', scheduleEvaluate);
$('auto-mtls').addEventListener('change', () => evaluateNow());

// ---- examples and files -------------------------------------------------------

function fillExamples() {
  const select = $('example');
  const groups = new Map();
  for (const ex of EXAMPLES) {
    if (!groups.has(ex.group)) groups.set(ex.group, el('optgroup', { label: ex.group }));
    groups.get(ex.group).append(el('option', { value: ex.id, title: ex.description }, ex.title));
  }
  select.append(...groups.values());
  select.addEventListener('change', () => {
    const ex = EXAMPLES.find((e) => e.id === select.value);
    if (ex) loadExample(ex);
  });
}

function loadExample(ex) {
  setText(ex.text);
  $('example').value = ex.id;
  $('example-description').textContent = ex.description;
  $('example-description').title = ex.description;
  evaluateNow();
}

async function loadFiles(files) {
  const texts = await Promise.all([...files].map(async (f) => `# ---- ${f.name}\n${(await f.text()).trimEnd()}\n`));
  if (texts.length === 0) return;
  setText(texts.join('---\n'));
  $('example').value = '';
  $('example-description').textContent = [...files].map((f) => f.name).join(', ');
  evaluateNow();
}

$('open-files').addEventListener('click', () => $('file-input').click());
$('file-input').addEventListener('change', (e) => loadFiles(e.target.files));
const editor = $('editor');
editor.addEventListener('dragover', (e) => {
  e.preventDefault();
  editor.classList.add('dragging');
});
editor.addEventListener('dragleave', () => editor.classList.remove('dragging'));
editor.addEventListener('drop', (e) => {
  e.preventDefault();
  editor.classList.remove('dragging');
  loadFiles(e.dataTransfer.files);
});

// ---- the URL fragment: #z=<base64url(deflate-raw(JSON))>, or #j= uncompressed ------

function toBase64Url(bytes) {
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function fromBase64Url(text) {
  const bin = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

async function pipe(bytes, stream) {
  const out = new Blob([bytes]).stream().pipeThrough(stream);
  return new Uint8Array(await new Response(out).arrayBuffer());
}

async function encodeState(state) {
  const bytes = new TextEncoder().encode(JSON.stringify(state));
  if (typeof CompressionStream === 'function') {
    return `z=${toBase64Url(await pipe(bytes, new CompressionStream('deflate-raw')))}`;
  }
  return `j=${toBase64Url(bytes)}`;
}

async function decodeState(fragment) {
  const [kind, data] = [fragment.slice(0, 2), fragment.slice(2)];
  let bytes = fromBase64Url(data);
  if (kind === 'z=') bytes = await pipe(bytes, new DecompressionStream('deflate-raw'));
  else if (kind !== 'j=') throw new Error('unknown link format');
  const state = JSON.parse(new TextDecoder().decode(bytes));
  if (typeof state.t !== 'string') throw new Error('the link carries no text');
  return state;
}

let saving = Promise.resolve();
function saveToFragment() {
  const state = { t: currentText(), o: options(), e: $('example').value || undefined };
  saving = saving.then(async () => {
    const fragment = await encodeState(state);
    history.replaceState(null, '', `#${fragment}`);
    document.body.dataset.saved = String(evaluations);
  });
  return saving;
}

async function restoreFromFragment() {
  const fragment = location.hash.slice(1);
  if (!fragment) return false;
  try {
    const state = await decodeState(fragment);
    setText(state.t);
    if (state.o) {
      $('root-namespace').value = state.o.rootNamespace ?? 'istio-system';
      $('auto-mtls').checked = state.o.autoMtls !== false;
    }
    const ex = EXAMPLES.find((e) => e.id === state.e);
    if (ex && ex.text === state.t) {
      $('example').value = ex.id;
      $('example-description').textContent = ex.description;
    }
    return true;
  } catch (e) {
    showFault(`This link could not be read (${e.message}); showing an example instead.`);
    return false;
  }
}

$('share').addEventListener('click', async () => {
  await saving;
  const url = location.href;
  const note = url.length > SHARE_URL_WARN ? ` (long link: ${url.length} characters; some tools cut links this long)` : '';
  try {
    await navigator.clipboard.writeText(url);
    $('share').textContent = 'Link copied';
  } catch {
    $('share').textContent = 'Copy the address bar';
  }
  $('share').title = `The link holds the whole text${note}.`;
  setTimeout(() => { $('share').textContent = 'Copy link'; }, 2000);
});

window.addEventListener('hashchange', async () => {
  if (await restoreFromFragment()) evaluateNow();
});

// ---- start ------------------------------------------------------------------------

// For the benchmark and for debugging from the console.
window.peerauth = {
  // Resolves to the parsed evaluation (null if the checker crashed).
  evaluate: (text, opts = {}) => evaluateText(text, { ...options(), ...opts }),
  // The text being checked, wherever it is shown (the benchmark compares it with what it pasted).
  text: () => currentText(),
  // Proves the crash path: the module panics on purpose, the page shows it and recovers.
  selfTestPanic: async () => {
    const reply = await ask({ type: 'panic' });
    if (reply.type === 'crash') await restartWorker(reply.message);
  },
};

async function start() {
  fillExamples();
  const restored = await restoreFromFragment();
  try {
    await startWorker();
  } catch (e) {
    document.body.dataset.status = 'failed';
    const hint = location.protocol === 'file:' ? ' Serve this folder over HTTP: browsers do not run module workers or WebAssembly from file:// pages.' : '';
    showFault(`Could not load the checker (${e.message}).${hint}`);
    $('summary').textContent = 'The checker is not available.';
    return;
  }
  if (restored) evaluateNow();
  else loadExample(EXAMPLES.find((e) => e.id === 'shop') ?? EXAMPLES[0]);
}

start();
