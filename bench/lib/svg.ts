/** A dependency-free SVG line chart: series of (x, y) points, shared axes. */
export interface Series { name: string; points: Array<[number, number]>; color: string }

export function lineChart(title: string, xLabel: string, yLabel: string, series: Series[], width = 760, height = 300): string {
  const pad = { l: 70, r: 160, t: 30, b: 40 };
  const all = series.flatMap((s) => s.points);
  const xMax = Math.max(1, ...all.map((p) => p[0]));
  const yMax = Math.max(1, ...all.map((p) => p[1])) * 1.1;
  const X = (x: number) => pad.l + (x / xMax) * (width - pad.l - pad.r);
  const Y = (y: number) => height - pad.b - (y / yMax) * (height - pad.t - pad.b);
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const ticks = Array.from({ length: 5 }, (_, i) => (yMax / 4) * i);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="18" text-anchor="middle" font-size="13">${esc(title)}</text>`,
    `<line x1="${pad.l}" y1="${Y(0)}" x2="${width - pad.r}" y2="${Y(0)}" stroke="#333"/>`,
    `<line x1="${pad.l}" y1="${Y(0)}" x2="${pad.l}" y2="${pad.t}" stroke="#333"/>`,
    ...ticks.map((t) => `<text x="${pad.l - 6}" y="${Y(t) + 4}" text-anchor="end">${Math.round(t).toLocaleString('en-US')}</text><line x1="${pad.l}" x2="${width - pad.r}" y1="${Y(t)}" y2="${Y(t)}" stroke="#eee"/>`),
    `<text x="${(pad.l + width - pad.r) / 2}" y="${height - 8}" text-anchor="middle">${esc(xLabel)} (0–${Math.round(xMax)})</text>`,
    `<text x="14" y="${height / 2}" transform="rotate(-90 14 ${height / 2})" text-anchor="middle">${esc(yLabel)}</text>`,
  ];
  series.forEach((s, i) => {
    if (s.points.length) parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${s.points.map((p) => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(' ')}"/>`);
    parts.push(`<rect x="${width - pad.r + 10}" y="${pad.t + i * 18}" width="12" height="3" fill="${s.color}"/><text x="${width - pad.r + 28}" y="${pad.t + i * 18 + 5}">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}
