// Indicator overlays of the chart. The API gives an indicator's current value (live,
// by subscription) but not its past, so the line over the loaded bars is computed here
// from the same bars with the server's formulas (SMA: the mean of the last n closes;
// EMA: seeded with the SMA of its first n closes, then k = 2 / (n + 1)); each value the
// server sends then replaces the point of its bar, so the live tail is the server's.

export const OVERLAYS = [
  { key: "SMA(20)", label: "SMA 20", spec: { kind: "SMA", period: 20 }, color: "#f0b429" },
  { key: "EMA(20)", label: "EMA 20", spec: { kind: "EMA", period: 20 }, color: "#58a6ff" },
  { key: "EMA(50)", label: "EMA 50", spec: { kind: "EMA", period: 50 }, color: "#d2a8ff" },
];

function sma(closes, period) {
  const out = new Array(closes.length).fill(null);
  let sum = 0;
  for (let i = 0; i < closes.length; i++) {
    sum += closes[i];
    if (i >= period) sum -= closes[i - period];
    if (i >= period - 1) out[i] = sum / period;
  }
  return out;
}

function ema(closes, period) {
  const out = new Array(closes.length).fill(null);
  const k = 2 / (period + 1);
  let value = 0;
  for (let i = 0; i < closes.length; i++) {
    if (i < period - 1) value += closes[i];
    else if (i === period - 1) value = (value + closes[i]) / period;
    else value = (closes[i] - value) * k + value;
    if (i >= period - 1) out[i] = value;
  }
  return out;
}

/** Line points ({time, value}) of one overlay over candles ({time, close}). */
export function computeLine(overlay, candles) {
  const closes = candles.map((c) => c.close);
  const compute = overlay.spec.kind === "SMA" ? sma : ema;
  const values = compute(closes, overlay.spec.period);
  const points = [];
  values.forEach((value, i) => {
    if (value !== null) points.push({ time: candles[i].time, value });
  });
  return points;
}
