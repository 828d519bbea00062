// The edgecls web app: classify an image in the browser with the bundle's exported model
// (onnxruntime-web for .onnx, LiteRT.js for .tflite), check itself on the golden vectors, and expose
// what Python drives (window.edgecls: classifyBatch for parity, bench for in-page latency).
import {toModelPixels} from './pixels.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const cfg = await (await fetch('config.json')).json();
const {height: H, width: W, channels: C} = cfg.input;
const maxThreads = Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1));
const threads = crossOriginIsolated ? Number(params.get('threads') || maxThreads) : 1;

function status(text, state) {
  $('status').textContent = text;
  if (state) $('status').dataset.state = state;
}

// uint8 H x W x C pixels -> the model's input (float32 raw 0-255, or the int8 model's uint8).
function toInput(px) {
  const q = cfg.input.dtype === 'uint8';
  const out = q ? new Uint8Array(px.length) : new Float32Array(px.length);
  for (let i = 0; i < px.length; i++) {
    const v = px[i];
    out[i] = q ? Math.min(255, Math.max(0, Math.round(v / cfg.input.scale + cfg.input.zero_point))) : v;
  }
  return out;
}

function dequantize(arr) {
  if (cfg.output.dtype === 'float32') return Float32Array.from(arr);
  return Float32Array.from(arr, (q) => (q - cfg.output.zero_point) * cfg.output.scale);
}

async function onnxBackend() {
  const ort = await import('./runtime/onnxruntime-web/ort.wasm.min.mjs');
  ort.env.wasm.wasmPaths = new URL('runtime/onnxruntime-web/', location.href).href;
  ort.env.wasm.numThreads = threads;
  const session = await ort.InferenceSession.create(cfg.model, {executionProviders: ['wasm']});
  const [inName, outName] = [session.inputNames[0], session.outputNames[0]];
  return {
    info: {runtime: 'onnxruntime-web', version: ort.env.versions.web, backend: 'wasm', simd: true,
           threads: ort.env.wasm.numThreads},
    prepare(data) {
      const feeds = {[inName]: new ort.Tensor('float32', data, [1, H, W, C])};
      let last;
      return {run: async () => { last = await session.run(feeds); }, output: () => dequantize(last[outName].data)};
    },
  };
}

async function tfliteBackend() {
  const lrt = await import('./runtime/litertjs/core/index.js');
  const relaxed = await lrt.supportsFeature('relaxedSimd');
  const useThreads = crossOriginIsolated && threads > 1 && relaxed && await lrt.supportsFeature('threads');
  await lrt.loadLiteRt(new URL('runtime/litertjs/wasm/', location.href).href, {threads: useThreads});
  const model = await lrt.loadAndCompile(new URL(cfg.model, location.href).href,
                                         {accelerator: 'wasm', cpuOptions: {numThreads: useThreads ? threads : 1}});
  return {
    info: {runtime: 'litert.js', version: cfg.runtime.version, backend: 'wasm (XNNPACK)', simd: true,
           relaxed_simd: relaxed, threads: useThreads ? threads : 1},
    prepare(data) {
      const input = new lrt.Tensor(data, [1, H, W, C]);
      let outs;
      return {
        run: async () => {
          if (outs) for (const o of outs) o.delete();
          outs = await model.run(input);
        },
        output: () => dequantize(outs[0].toTypedArray()),
      };
    },
  };
}

async function decode(blob) {
  // as decoded: EXIF orientation applied, no colour management; the canvas stores premultiplied
  // alpha, so semi-transparent pixels may differ by rounding (docs/embedding.md)
  const bmp = await createImageBitmap(blob, {imageOrientation: 'from-image', premultiplyAlpha: 'none',
                                             colorSpaceConversion: 'none'});
  const canvas = new OffscreenCanvas(bmp.width, bmp.height);
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  ctx.drawImage(bmp, 0, 0);
  const rgba = ctx.getImageData(0, 0, bmp.width, bmp.height).data;
  return toModelPixels(rgba, bmp.height, bmp.width, H, W, C);
}

let backend;

async function classifyPixels(px) {
  const call = backend.prepare(toInput(px));
  await call.run();
  return call.output();
}

function top(probs, k) {
  return [...probs].map((p, i) => [cfg.labels[i], p]).sort((a, b) => b[1] - a[1]).slice(0, k);
}

async function classifyFile(file) {
  const t = performance.now();
  const px = await decode(file);
  const probs = await classifyPixels(px);
  const ms = performance.now() - t;
  const best = top(probs, Math.min(5, cfg.labels.length));
  $('result').innerHTML = '<tr><th>class</th><th>probability</th></tr>' + best.map(([l, p]) =>
    `<tr><td>${l.replace(/[<&>]/g, '')}</td><td>${p.toFixed(4)}</td></tr>`).join('');
  $('result').dataset.top1 = best[0][0];
  $('preview').src = URL.createObjectURL(file);
  const result = {file: file.name, top: best, probabilities: Array.from(probs), ms};
  $('result-json').textContent = JSON.stringify(result);
  status(`${file.name}: ${best[0][0]} (${(100 * best[0][1]).toFixed(1)}%), ${ms.toFixed(1)} ms`, 'classified');
  return result;
}

function npyFloat32(buf) {
  const view = new DataView(buf);
  const hlen = view.getUint16(8, true);
  return new Float32Array(buf.slice(10 + hlen));
}

// The golden vectors through the user's path (file -> decode -> pixels -> input -> model), against the
// stored probabilities of the same artifact (its tolerance) and of Keras.
async function selftest() {
  const g = await (await fetch(cfg.golden)).json();
  const ref = g.outputs.find((o) => o.artifact === cfg.artifact.file && o.artifact_sha256 === cfg.artifact.sha256);
  if (!ref) throw new Error(`golden.json has no outputs for ${cfg.artifact.file} with its sha256`);
  const keras = g.keras ? g.keras.probabilities : null;
  const images = [];
  let maxArt = 0, maxKeras = 0, sameArt = 0, sameKeras = 0, inputDiff = 0;
  for (let i = 0; i < g.images.length; i++) {
    const img = g.images[i];
    const px = await decode(await (await fetch('golden/' + img.file.file)).blob());
    const x = toInput(px);
    const want = npyFloat32(await (await fetch('golden/' + img.input.file)).arrayBuffer());
    let dIn = 0;
    for (let j = 0; j < want.length; j++) {
      const v = cfg.input.dtype === 'uint8' ? (x[j] - cfg.input.zero_point) * cfg.input.scale : x[j];
      dIn = Math.max(dIn, Math.abs(v - want[j]));
    }
    const probs = await classifyPixels(px);
    if (i === 0) timings.first_classification_ms = performance.now();
    const argmax = (a) => a.indexOf(Math.max(...a));
    const mine = argmax(Array.from(probs));
    const dArt = Math.max(...ref.probabilities[i].map((p, k) => Math.abs(p - probs[k])));
    const dKeras = keras ? Math.max(...keras[i].map((p, k) => Math.abs(p - probs[k]))) : null;
    sameArt += mine === argmax(ref.probabilities[i]);
    if (keras) sameKeras += mine === argmax(keras[i]);
    maxArt = Math.max(maxArt, dArt);
    if (keras) maxKeras = Math.max(maxKeras, dKeras);
    inputDiff = Math.max(inputDiff, dIn);
    images.push({file: img.file.file, label: img.label, top1: cfg.labels[mine], max_abs_diff: dArt,
                 max_abs_diff_vs_keras: dKeras, input_max_diff: dIn});
  }
  const n = g.images.length;
  const tol = ref.tolerance.abs;
  const passed = sameArt === n && maxArt <= tol && inputDiff === 0;
  return {passed, images: n, artifact: cfg.artifact.file, tolerance: tol,
          top1_agreement: sameArt / n, max_abs_diff: maxArt,
          keras_top1_agreement: keras ? sameKeras / n : null, keras_max_abs_diff: keras ? maxKeras : null,
          input_max_diff: inputDiff, per_image: images,
          why: passed ? '' : [sameArt < n ? `${n - sameArt} of ${n} top-1 answers differ` : '',
                              maxArt > tol ? `max |Δp| ${maxArt.toExponential(2)} > ${tol}` : '',
                              inputDiff ? `input tensor differs from golden by up to ${inputDiff}` : '']
            .filter(Boolean).join('; ')};
}

// Probabilities of N raw uint8 H x W x C images in a binary file: the same path from pixels on.
async function classifyBatch(url, n) {
  const buf = new Uint8Array(await (await fetch(url)).arrayBuffer());
  const size = H * W * C;
  if (buf.length !== n * size) throw new Error(`${url}: ${buf.length} bytes, expected ${n} x ${size}`);
  const out = [];
  for (let i = 0; i < n; i++) out.push(Array.from(await classifyPixels(buf.subarray(i * size, (i + 1) * size))));
  return out;
}

function timerResolution() {
  let best = Infinity;
  for (let i = 0; i < 50; i++) {
    const a = performance.now();
    let b = performance.now();
    while (b === a) b = performance.now();
    best = Math.min(best, b - a);
  }
  return best;
}

// In-page latency: warm-up until the per-call time settles, then groups of `group` calls timed with
// performance.now(), `group` chosen so one timing spans >= 200 timer ticks. A call classifies the
// batch's images one after another (the app's path: one image at a time), input tensors made before.
async function bench(o) {
  const buf = new Uint8Array(await (await fetch(o.url)).arrayBuffer());
  const size = H * W * C;
  const calls = [];
  for (let i = 0; i < o.n; i++) calls.push(backend.prepare(toInput(buf.subarray(i * size, (i + 1) * size))));
  const run = async () => { for (const c of calls) await c.run(); };
  const outputs = () => calls.map((c) => Array.from(c.output()));
  const resolution = timerResolution();
  let t = performance.now();
  await run();
  const first = performance.now() - t;
  const start = performance.now();
  let runs = 0, prev = null, settled = false, median = first, elapsed = 0;
  for (;;) {
    const block = [];
    for (let i = 0; i < 5; i++) {
      t = performance.now();
      await run();
      block.push(performance.now() - t);
    }
    runs += 5;
    block.sort((a, b) => a - b);
    median = block[2];
    elapsed = (performance.now() - start) / 1000;
    if (prev !== null && median >= 0.95 * prev && runs >= o.warmup && elapsed >= o.warmup_time) { settled = true; break; }
    if (elapsed >= 3) break;
    prev = median;
  }
  const group = Math.max(1, Math.ceil(200 * resolution / Math.max(median, 1e-6)));
  const times = [];
  const samples = [];
  const t0 = performance.now();
  while (times.length < o.min_runs || performance.now() - t0 < o.min_time * 1000) {
    t = performance.now();
    for (let i = 0; i < group; i++) await run();
    times.push((performance.now() - t) / group);
    if (times.length === 1) samples.push(outputs());
  }
  samples.push(outputs());
  return {first_ms: first, times_ms: times, group, resolution_ms: resolution, samples,
          warmup: {runs, seconds: elapsed, settled, last_block_p50_ms: median}};
}

const timings = {};
window.edgecls = {config: cfg, classifyBatch, bench, classifyFile, timings};
try {
  status('loading the model…');
  backend = await (cfg.format === 'onnx' ? onnxBackend() : tfliteBackend());
  timings.model_ready_ms = performance.now();
  window.edgecls.info = {...backend.info, cross_origin_isolated: crossOriginIsolated,
                         hardware_concurrency: navigator.hardwareConcurrency, timer_resolution_ms: timerResolution()};
  $('runtime').textContent = `${cfg.artifact.file} (${cfg.format} ${cfg.precision}) on ${backend.info.runtime} ` +
    `${backend.info.version || ''}, ${backend.info.backend}, ${backend.info.threads} thread(s)`;
  if (cfg.golden && params.get('selftest') !== '0') {
    status('self-test on the golden vectors…');
    const st = await selftest();
    window.edgecls.selftest = st;
    $('selftest-json').textContent = JSON.stringify(st);
    $('selftest').textContent = (st.passed ? 'self-test passed: ' : 'self-test FAILED: ') +
      `${st.images} golden images, top-1 agreement ${(100 * st.top1_agreement).toFixed(0)}%, ` +
      `max |Δp| ${st.max_abs_diff.toExponential(2)} (tolerance ${Number(st.tolerance.toPrecision(3))})` +
      (st.keras_max_abs_diff !== null ? `; vs Keras: agreement ${(100 * st.keras_top1_agreement).toFixed(0)}%, ` +
        `max |Δp| ${st.keras_max_abs_diff.toExponential(2)}` : '') + (st.why ? ` — ${st.why}` : '');
    $('selftest').dataset.passed = String(st.passed);
  }
  status('ready: drop or pick an image', 'ready');
} catch (e) {
  window.edgecls.error = String(e && e.message || e);
  status(`error: ${window.edgecls.error}`, 'error');
}

$('file').addEventListener('change', (ev) => ev.target.files[0] && classifyFile(ev.target.files[0]));
const drop = $('drop');
drop.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (ev) => {
  ev.preventDefault();
  drop.classList.remove('over');
  if (ev.dataTransfer.files[0]) classifyFile(ev.dataTransfer.files[0]);
});
