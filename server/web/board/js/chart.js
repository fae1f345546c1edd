// The candlestick chart of the selected symbol and timeframe: stored bars first (the
// `bars` query), then every update of the forming bar, each close and each revision
// (the `bars` subscription, subscribed before the query so nothing falls in between),
// with volume and indicator overlays (overlays.js). Times are shown in New York time.

import { describe } from "./api.js";
import { byId, el, say, setSign, setText } from "./dom.js";
import { change, digitsFor, price, time, volume as formatVolume } from "./format.js";
import { OVERLAYS, computeLine } from "./overlays.js";

const TIMEFRAMES = [["S1", "1s"], ["M1", "1m"], ["M5", "5m"], ["M15", "15m"], ["H1", "1h"], ["D1", "1D"]];
const HISTORY = 600;
const UP = "#26a69a";
const DOWN = "#ef5350";
const BAR = "symbol timeframe start open high low close volume final";
const BARS = `query ChartBars($s: String!, $tf: Timeframe!, $n: Int!) {
  bars(symbol: $s, timeframe: $tf, limit: $n) { ${BAR} } }`;
const LIVE = `subscription ChartLive($s: String!, $tf: Timeframe!) {
  bars(symbol: $s, timeframe: $tf) { kind snapshot bar { ${BAR} } gap { from to filled bars reason } } }`;
const INDICATORS = `subscription ChartIndicators($s: String!, $tf: Timeframe!, $specs: [IndicatorInput!]!) {
  indicators(symbol: $s, timeframe: $tf, specs: $specs) { key ready barStart outputs { value } } }`;

const NY = (options) => new Intl.DateTimeFormat("en-US", { timeZone: "America/New_York", hour12: false, ...options });
const TICK_FORMATS = [NY({ year: "numeric" }), NY({ month: "short" }), NY({ month: "short", day: "numeric" }),
  NY({ hour: "2-digit", minute: "2-digit" }), NY({ hour: "2-digit", minute: "2-digit", second: "2-digit" })];

function toCandle(bar) {
  return { time: Math.floor(bar.start / 1000), open: bar.open, high: bar.high, low: bar.low,
    close: bar.close, volume: bar.volume };
}

function toVolume(c) {
  return { time: c.time, value: c.volume, color: c.close >= c.open ? "rgba(38,166,154,0.35)" : "rgba(239,83,80,0.35)" };
}

export function startChart(ctx) {
  const container = byId("chart");
  const status = byId("chart-status");
  const legend = byId("chart-legend");
  const values = byId("chart-indicators");
  const charts = window.LightweightCharts;
  if (!charts) {
    say(status, "The chart library did not load (missing or altered file): reinstall the front-end files.", "error");
    return () => undefined;
  }

  const chart = charts.createChart(container, {
    autoSize: true,
    layout: { background: { type: "solid", color: "#0d1117" }, textColor: "#8b949e", fontSize: 11,
      attributionLogo: false }, // the page credits TradingView in its footer (NOTICE)
    grid: { vertLines: { color: "#161b22" }, horzLines: { color: "#161b22" } },
    rightPriceScale: { borderColor: "#30363d" },
    timeScale: { borderColor: "#30363d", timeVisible: true, rightOffset: 4,
      tickMarkFormatter: (t, type) => TICK_FORMATS[type].format(new Date(t * 1000)) },
    crosshair: { mode: charts.CrosshairMode.Normal },
    localization: { timeFormatter: (t) => `${TICK_FORMATS[2].format(new Date(t * 1000))} ${time(t * 1000)}` },
  });
  const candles = chart.addSeries(charts.CandlestickSeries, {
    upColor: UP, downColor: DOWN, borderVisible: false, wickUpColor: UP, wickDownColor: DOWN });
  const volumes = chart.addSeries(charts.HistogramSeries, {
    priceFormat: { type: "volume" }, priceScaleId: "", lastValueVisible: false, priceLineVisible: false });
  volumes.priceScale().applyOptions({ scaleMargins: { top: 0.82, bottom: 0 } });
  const lines = new Map(OVERLAYS.map((o) => [o.key, chart.addSeries(charts.LineSeries, {
    color: o.color, lineWidth: 1, priceLineVisible: false, lastValueVisible: false,
    crosshairMarkerVisible: false, visible: false })]));

  let timeframe = localStorage.getItem("tickgraph.timeframe") || "M1";
  let enabled = new Set(JSON.parse(localStorage.getItem("tickgraph.overlays") || '["SMA(20)","EMA(50)"]'));
  let data = [];
  let generation = 0;
  let stopLive = () => undefined;
  let stopIndicators = () => undefined;
  /** Points the server's indicator stream has given ("key@time"): kept over ours. */
  const serverValues = new Set();

  const tfButtons = TIMEFRAMES.map(([tf, label]) => el("button", { type: "button", text: label, dataset: { tf },
    onclick: () => { timeframe = tf; localStorage.setItem("tickgraph.timeframe", tf); load(); } }));
  byId("timeframes").replaceChildren(...tfButtons);
  const overlayButtons = OVERLAYS.map((o) => el("button", { type: "button", text: o.label, dataset: { key: o.key },
    onclick: () => toggle(o.key) }));
  byId("overlays").replaceChildren(...overlayButtons);

  function toggle(key) {
    if (enabled.has(key)) enabled.delete(key); else enabled.add(key);
    localStorage.setItem("tickgraph.overlays", JSON.stringify([...enabled]));
    drawOverlays();
    subscribeIndicators(ctx.symbol, generation);
  }

  function showLegend(c) {
    legend.textContent = "";
    if (!c) return;
    const digits = digitsFor(c.close);
    const diff = c.close - c.open;
    const move = el("b", { text: `${change(diff, digits)}` });
    setSign(move, diff);
    legend.append(
      `O ${price(c.open, digits)}  H ${price(c.high, digits)}  L ${price(c.low, digits)}  C ${price(c.close, digits)} `,
      move, `  V ${formatVolume(c.volume)}`);
  }

  function drawOverlays() {
    for (const o of OVERLAYS) {
      const series = lines.get(o.key);
      const on = enabled.has(o.key);
      series.applyOptions({ visible: on });
      const points = on ? computeLine(o, data) : [];
      series.setData(points);
      if (points.length) showIndicator(o, points[points.length - 1].value);
      else shown.get(o.key)?.remove();
    }
    for (const b of overlayButtons) b.classList.toggle("active", enabled.has(b.dataset.key));
  }

  function place(candle) {
    const last = data[data.length - 1];
    if (!last || candle.time > last.time) {
      data.push(candle);
    } else {
      const index = data.findIndex((c) => c.time === candle.time);
      if (index === -1) return; // older than what is loaded
      data[index] = candle;
    }
    const historical = last && candle.time < last.time;
    candles.update(candle, historical);
    volumes.update(toVolume(candle), historical);
    if (historical) {
      drawOverlays();
      return;
    }
    extendOverlays();
    showLegend(candle);
    ctx.dispatchEvent(new CustomEvent("last", { detail: { symbol: ctx.symbol, price: candle.close } }));
  }

  /** The overlays' newest point, from the bars (the server's value replaces it when
   *  the indicators stream, see subscribeIndicators). */
  function extendOverlays() {
    for (const o of OVERLAYS) {
      if (!enabled.has(o.key)) continue;
      const tail = computeLine(o, data); // a few hundred bars: cheaper than a frame
      const point = tail[tail.length - 1];
      if (point && point.time === data[data.length - 1].time && !serverValues.has(`${o.key}@${point.time}`)) {
        lines.get(o.key).update(point);
        showIndicator(o, point.value);
      }
    }
  }

  function apply(event) {
    if (event.kind === "GAP" && event.gap) {
      const g = event.gap;
      say(status, `Feed gap ${time(g.from)}–${time(g.to)} (${g.reason}): ${g.filled ? `${g.bars} bars filled from history` : "bars may be missing"}`, "warn");
      return;
    }
    if (event.bar) place(toCandle(event.bar));
  }

  function subscribeIndicators(symbol, gen) {
    stopIndicators();
    serverValues.clear();
    const specs = OVERLAYS.filter((o) => enabled.has(o.key)).map((o) => o.spec);
    values.textContent = "";
    if (!specs.length || !ctx.canStream("indicators")) return;
    stopIndicators = ctx.subscribe(INDICATORS, { s: symbol, tf: timeframe, specs }, {
      next: ({ indicators: v }) => {
        const overlay = OVERLAYS.find((o) => o.key === v.key);
        const value = v.outputs[0]?.value;
        if (gen !== generation || !overlay || !enabled.has(v.key) || typeof value !== "number" || !v.ready) return;
        const t = Math.floor(v.barStart / 1000);
        serverValues.add(`${v.key}@${t}`);
        const series = lines.get(v.key);
        const points = series.data();
        const last = points[points.length - 1];
        if (!last || t >= last.time) series.update({ time: t, value });
        else if (points.some((p) => p.time === t)) series.update({ time: t, value }, true);
        showIndicator(overlay, value);
      },
      error: (error) => say(status, describe(error), "error"),
    });
  }

  const shown = new Map();
  function showIndicator(overlay, value) {
    let node = shown.get(overlay.key);
    if (!node || !node.isConnected) {
      node = el("span", { class: "ind", dataset: { key: overlay.key } });
      node.style.color = overlay.color;
      shown.set(overlay.key, node);
      values.append(node);
    }
    setText(node, `${overlay.label} ${price(value, digitsFor(value))}`);
  }

  async function load() {
    const gen = ++generation;
    const symbol = ctx.symbol;
    stopLive();
    for (const b of tfButtons) b.classList.toggle("active", b.dataset.tf === timeframe);
    setText(byId("chart-symbol"), symbol);
    chart.applyOptions({ timeScale: { secondsVisible: timeframe === "S1" } });
    say(status, `Loading ${symbol} ${timeframe}…`);
    const early = [];
    let loaded = false;
    stopLive = ctx.subscribe(LIVE, { s: symbol, tf: timeframe }, {
      next: ({ bars }) => {
        if (gen !== generation) return;
        if (loaded) apply(bars); else early.push(bars);
      },
      error: (error) => say(status, describe(error), "error"),
    });
    subscribeIndicators(symbol, gen);
    try {
      const result = await ctx.request(BARS, { s: symbol, tf: timeframe, n: HISTORY });
      if (gen !== generation) return;
      data = result.bars.map(toCandle);
      candles.setData(data);
      volumes.setData(data.map(toVolume));
      drawOverlays();
      loaded = true;
      for (const event of early) apply(event);
      showLegend(data[data.length - 1]);
      // The newest 150 bars, right-aligned even when there are fewer (a new symbol).
      chart.timeScale().setVisibleLogicalRange({ from: data.length - 150, to: data.length + 4 });
      say(status, data.length ? "" : `No ${timeframe} bars of ${symbol} yet: they appear as it trades.`);
    } catch (error) {
      if (gen === generation) say(status, describe(error), "error");
    }
  }

  chart.subscribeCrosshairMove((param) => {
    const hovered = param.time ? data.find((c) => c.time === param.time) : null;
    showLegend(hovered || data[data.length - 1]);
  });
  ctx.addEventListener("symbol", load);
  window.tickgraph.chart = {
    get symbol() { return ctx.symbol; },
    get timeframe() { return timeframe; },
    /** What the candlestick series holds, as plain objects (for tests and debugging). */
    candles: () => candles.data().map((c) => ({ ...c })),
    overlay: (key) => lines.get(key).data().map((p) => ({ ...p })),
  };
  load();

  return () => {
    generation++;
    stopLive();
    stopIndicators();
    ctx.removeEventListener("symbol", load);
    chart.remove();
    delete window.tickgraph.chart;
  };
}
