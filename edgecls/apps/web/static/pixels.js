// The preprocessing contract of docs/embedding.md, in the browser: RGBA pixels (as decoded) to the
// model's uint8 H x W x C pixels. Pure functions: also run under Node by edgecls's tests, against Pillow.

const PRECISION_BITS = 32 - 8 - 2; // Pillow's libImaging/Resample.c, 8 bits per channel

function bilinear(x) {
  if (x < 0) x = -x;
  return x < 1 ? 1 - x : 0;
}

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for the BILINEAR filter (support 1): the triangle
// is widened by the shrink factor, so shrinking antialiases.
function coeffs(inSize, outSize) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 1 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Float64Array(outSize * ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    const k = new Float64Array(xmax);
    for (let x = 0; x < xmax; x++) {
      const w = bilinear((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const p = ww !== 0 ? k[x] / ww : k[x];
      kk[xx * ksize + x] = p < 0 ? Math.trunc(-0.5 + p * (1 << PRECISION_BITS))
        : Math.trunc(0.5 + p * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return {ksize, bounds, kk};
}

function clip8(v) {
  if (v >= 255 * 2 ** PRECISION_BITS + 2 ** PRECISION_BITS) return 255;
  if (v <= 0) return 0;
  return Math.floor(v / 2 ** PRECISION_BITS);
}

// One pass of Pillow's resample along one axis of an H x W x C uint8 image.
function pass(src, h, w, c, outLen, horizontal) {
  const inLen = horizontal ? w : h;
  const {ksize, bounds, kk} = coeffs(inLen, outLen);
  const oh = horizontal ? h : outLen;
  const ow = horizontal ? outLen : w;
  const dst = new Uint8Array(oh * ow * c);
  const half = 2 ** (PRECISION_BITS - 1);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      const o = horizontal ? x : y;
      const xmin = bounds[o * 2];
      const xmax = bounds[o * 2 + 1];
      for (let ch = 0; ch < c; ch++) {
        let ss = half;
        for (let i = 0; i < xmax; i++) {
          const v = horizontal ? src[(y * w + xmin + i) * c + ch] : src[((xmin + i) * w + x) * c + ch];
          ss += v * kk[o * ksize + i];
        }
        dst[(y * ow + x) * c + ch] = clip8(ss);
      }
    }
  }
  return dst;
}

// Image.resize((W, H), Image.Resampling.BILINEAR): two passes, each rounded to 8 bits. Pillow 13 does
// not always run them in the same order, and the 8-bit rounding between them then differs by up to one
// level on some pixels; this order (the smaller intermediate image first) matches it most often
// (docs/embedding.md: exact for one-axis resizes, within 1 level otherwise).
export function resizeBilinear(src, h, w, c, outH, outW) {
  if (outW === w && outH === h) return src;
  if (outW === w) return pass(src, h, w, c, outH, false);
  if (outH === h) return pass(src, h, w, c, outW, true);
  if (outW * Math.max(h, outH) <= Math.max(w, outW) * outH) return pass(pass(src, h, w, c, outW, true), h, outW, c, outH, false);
  return pass(pass(src, h, w, c, outH, false), outH, w, c, outW, true);
}

// RGBA (as decoded, alpha dropped, not composited) -> the model's channels: RGB, or Pillow's "L"
// (ITU-R 601-2 luma, L = (19595 R + 38470 G + 7471 B + 32768) >> 16).
export function fromRGBA(rgba, h, w, channels) {
  const out = new Uint8Array(h * w * channels);
  for (let i = 0; i < h * w; i++) {
    const r = rgba[i * 4], g = rgba[i * 4 + 1], b = rgba[i * 4 + 2];
    if (channels === 1) {
      out[i] = (19595 * r + 38470 * g + 7471 * b + 32768) >>> 16;
    } else {
      out[i * 3] = r;
      out[i * 3 + 1] = g;
      out[i * 3 + 2] = b;
    }
  }
  return out;
}

// Decoded RGBA of size h x w -> the model's uint8 H x W x C: convert, then resize when the size differs.
export function toModelPixels(rgba, h, w, H, W, C) {
  const px = fromRGBA(rgba, h, w, C);
  return h === H && w === W ? px : resizeBilinear(px, h, w, C, H, W);
}
