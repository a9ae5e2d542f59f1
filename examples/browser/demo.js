// The live demo of `npm run demo:browser` (plain JavaScript, run as it is by the browser).
import { AtomicBitmap, GuestAddress, GuestMemory, GuestMemoryRegion, heapBackend } from 'guestmem';

const G = GuestAddress;
const MIB = 1 << 20;
const PAGE = 4096;
const layout = [
  { start: 0, size: 640 * 1024 },
  { start: 1 * MIB, size: 16 * MIB },
  { start: 2 ** 32, size: 8 * MIB },
];
const memory = GuestMemory.fromRegions(
  layout.map(({ start, size }) => new GuestMemoryRegion(G(start), heapBackend(size), { bitmap: new AtomicBitmap(size) })),
);

// The map: each region and the holes between, widths by the log of their sizes.
const hex = (n) => `0x${n.toString(16)}`;
const map = document.getElementById('map');
let end = 0;
for (const { start, size } of layout) {
  if (start > end) map.append(box('hole', `hole ${hex(end)}`, start - end));
  map.append(box('ram', `RAM ${hex(start)}–${hex(start + size)} (${size / 1024} KiB)`, size));
  end = start + size;
}
function box(kind, text, size) {
  const div = document.createElement('div');
  div.className = kind;
  div.textContent = text;
  div.title = text;
  div.style.flex = String(Math.log2(size));
  return div;
}

// The picture: the 16 MiB region's 4096 pages, 64 x 64; brightness fades after each write.
const shown = layout[1];
document.getElementById('which').textContent = `RAM at ${hex(shown.start)} (${shown.size / PAGE} pages)`;
const canvas = document.getElementById('dirty');
const ctx = canvas.getContext('2d');
const heat = new Float32Array(shown.size / PAGE);
const image = ctx.createImageData(64, 64);
document.getElementById('isolation').textContent = crossOriginIsolated
  ? 'This page is cross-origin isolated: SharedArrayBuffer memory and shared bitmaps work here too.'
  : 'This page is not cross-origin isolated: shared memory would be a typed error naming the COOP/COEP headers.';

// A "guest": a sweeping memcpy, a hot stack page and scattered writes.
let tick = 0;
function guestRuns() {
  tick++;
  const sweep = shown.start + ((tick * 7 * PAGE) % shown.size);
  memory.fill(G(sweep), 6 * PAGE, tick & 0xff);
  memory.writeU64LE(G(shown.start + 0x3f0000), BigInt(tick));
  for (let i = 0; i < 12; i++) memory.writeU32LE(G(shown.start + 4 * Math.floor((Math.random() * shown.size) / 4)), tick);
  memory.writeU32LE(G(0x1000), tick); // low memory too: harvested, not drawn
}

let frames = 0;
let dirtyPages = 0;
function frame() {
  guestRuns();
  for (let i = 0; i < heat.length; i++) heat[i] *= 0.92;
  for (const { start, length } of memory.harvestDirty()) {
    if (start < shown.start || start >= shown.start + shown.size) continue;
    for (let p = (start - shown.start) / PAGE; p < (start - shown.start + length) / PAGE; p++) heat[p] = 1;
    dirtyPages += length / PAGE;
  }
  for (let i = 0; i < heat.length; i++) {
    const h = heat[i];
    image.data.set([40 + 215 * h, 40 + 120 * h, 60 - 40 * h, 255], i * 4);
  }
  ctx.putImageData(image, 0, 0);
  frames++;
  document.getElementById('stats').textContent = `frame ${frames}: ${dirtyPages} dirty pages harvested so far`;
  if (frames === 30 && location.search.includes('selftest')) {
    // What the browser test checks: the demo ran, harvested and drew.
    const lit = heat.filter((h) => h > 0).length;
    fetch('/result', { method: 'POST', body: JSON.stringify({ frames, dirtyPages, lit, regions: map.children.length }) });
  }
  requestAnimationFrame(frame);
}
requestAnimationFrame(frame);
