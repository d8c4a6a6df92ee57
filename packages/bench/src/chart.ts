/**
 * Horizontal bar charts as standalone SVG, drawn by the project (no chart library): one bar per
 * configuration, the value printed at its end, an optional marker line at 1.0 for ratios.
 */
export interface Bar {
  label: string;
  value: number;
  /** Highlight this bar (the baseline, say). */
  highlight?: boolean;
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function format(v: number): string {
  if (!Number.isFinite(v)) return '-';
  if (Math.abs(v) >= 100) return Math.round(v).toLocaleString('en-US');
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

/**
 * Renders bars as an SVG document.
 *
 * @example
 * ```ts
 * writeFileSync('batching.svg', barChart('mlp, 256 callers', [{ label: 'no batching', value: 1 }, { label: 'batching', value: 12.3 }], 'x throughput'));
 * ```
 */
export function barChart(
  title: string,
  bars: Bar[],
  unit: string,
  options: { markAt?: number } = {},
): string {
  const labelWidth = Math.min(360, Math.max(120, ...bars.map((b) => b.label.length * 7 + 16)));
  const plotWidth = 420;
  const barHeight = 22;
  const gap = 8;
  const top = 40;
  const height = top + bars.length * (barHeight + gap) + 30;
  const width = labelWidth + plotWidth + 90;
  const max = Math.max(...bars.map((b) => b.value), options.markAt ?? 0) || 1;
  const x = (v: number) => labelWidth + (Math.max(0, v) / max) * plotWidth;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="13">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="12" y="24" font-size="15" font-weight="600" fill="#111">${escapeXml(title)}</text>`,
  ];
  bars.forEach((b, i) => {
    const y = top + i * (barHeight + gap);
    const fill = b.highlight ? '#9ca3af' : '#2563eb';
    parts.push(
      `<text x="${labelWidth - 8}" y="${y + barHeight / 2 + 4}" text-anchor="end" fill="#111">${escapeXml(b.label)}</text>`,
      `<rect x="${labelWidth}" y="${y}" width="${Math.max(1, x(b.value) - labelWidth).toFixed(1)}" height="${barHeight}" rx="3" fill="${fill}"/>`,
      `<text x="${(x(b.value) + 6).toFixed(1)}" y="${y + barHeight / 2 + 4}" fill="#111">${escapeXml(format(b.value))}</text>`,
    );
  });
  if (options.markAt !== undefined) {
    const mx = x(options.markAt).toFixed(1);
    parts.push(
      `<line x1="${mx}" y1="${top - 6}" x2="${mx}" y2="${height - 24}" stroke="#dc2626" stroke-dasharray="4 3"/>`,
    );
  }
  parts.push(`<text x="${labelWidth}" y="${height - 8}" fill="#555">${escapeXml(unit)}</text>`, '</svg>');
  return `${parts.join('\n')}\n`;
}
