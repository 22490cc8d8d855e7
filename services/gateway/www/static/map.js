// A tile map of the regions: one square per ISO 3166-2 code, coloured by open cases.
import { s } from './dom.js';

const TILE_W = 96;
const TILE_H = 68;
const GAP = 8;

function mix(a, b, f) {
  return Math.round(a + (b - a) * f);
}

// from a pale blue (no case) to a dark blue (the most)
export function colour(count, max) {
  if (!count) return '#eef3f7';
  const f = max > 0 ? Math.min(1, 0.25 + (0.75 * count) / max) : 1;
  return `rgb(${mix(214, 11, f)},${mix(230, 60, f)},${mix(242, 93, f)})`;
}

// drawMap(regions: sorted codes, counts: Map code -> open cases, label: code -> tooltip)
export function drawMap(regions, counts, tip, ariaLabel) {
  const n = Math.max(regions.length, 1);
  const cols = Math.min(n, Math.max(3, Math.ceil(Math.sqrt(n * 1.5))));
  const rows = Math.ceil(n / cols);
  const w = cols * (TILE_W + GAP) + GAP;
  const hgt = rows * (TILE_H + GAP) + GAP;
  const max = Math.max(0, ...regions.map((r) => counts.get(r) || 0));
  const svg = s('svg', {
    viewBox: `0 0 ${w} ${hgt}`, role: 'img', 'aria-label': ariaLabel, class: 'tilemap',
    preserveAspectRatio: 'xMidYMin meet',
  });
  regions.forEach((code, i) => {
    const x = GAP + (i % cols) * (TILE_W + GAP);
    const y = GAP + Math.floor(i / cols) * (TILE_H + GAP);
    const c = counts.get(code) || 0;
    const fill = colour(c, max);
    const dark = c > 0 && max > 0 && 0.25 + (0.75 * c) / max > 0.6; // white text on the darker tiles
    svg.append(s('g', { class: 'tile', 'data-region': code, 'data-open': String(c) },
      s('title', {}, tip(code, c)),
      s('rect', { x, y, width: TILE_W, height: TILE_H, rx: 8, fill, stroke: '#7a8b99', 'stroke-width': 1 }),
      s('text', { x: x + TILE_W / 2, y: y + 26, 'text-anchor': 'middle', class: dark ? 'code dark' : 'code' }, code),
      s('text', { x: x + TILE_W / 2, y: y + 52, 'text-anchor': 'middle', class: dark ? 'count dark' : 'count' }, String(c))));
  });
  return { svg, max };
}
