// The watchlist: live bid/ask (quotes) and last price of each symbol, its change on
// the day against the previous close (today's open when no earlier day is stored), the
// day's volume and the server's stale flag (snapshots, re-read every few seconds).
// The last price streams (trades) when the tier leaves room for it; otherwise it comes
// from those snapshots, and live from the chart for the charted symbol. The one quotes
// subscription also covers the selected symbol, for the order ticket ("quote" events).
// Clicking a row selects the symbol for the chart, ticket and analysis.

import { describe } from "./api.js";
import { byId, el, flash, say, setSign, setText } from "./dom.js";
import { change, digitsFor, percent, price, volume } from "./format.js";

const STORE_KEY = "tickgraph.watchlist";
const REFRESH_MS = 10000;
const QUOTES = `subscription WatchQuotes($s: [String!]!) {
  quotes(symbols: $s, throttleMs: 100) { symbol bidPrice bidSize askPrice askSize }
}`;
const TRADES = `subscription WatchTrades($s: [String!]!) { trades(symbols: $s) { symbol price } }`;
const UNIVERSE = "query Universe { symbols { symbol inUniverse } }";

const SNAPSHOTS = `query Watch($s: [String!]!) {
  snapshots(symbols: $s) { symbol stale quote { bidPrice askPrice } lastTrade { price } day { open volume } } }`;

/** The previous day's close of each symbol: its D1 bars, one alias per symbol. */
function previousCloses(count) {
  const vars = Array.from({ length: count }, (_, i) => `$s${i}: String!`).join(", ");
  const days = Array.from({ length: count }, (_, i) =>
    `d${i}: bars(symbol: $s${i}, timeframe: D1, limit: 2) { close final }`).join("\n");
  return `query PreviousClose(${vars}) { ${days} }`;
}

export function startWatchlist(ctx) {
  const body = byId("watch-table").tBodies[0];
  const status = byId("watch-status");
  const form = byId("watch-add");
  const rows = new Map();
  let symbols = [];
  let streamed = [];
  let stopStreams = () => undefined;
  let timer = null;
  const streamingTrades = ctx.canStream("trades");

  function row(symbol) {
    const cells = {};
    for (const name of ["last", "chg", "pct", "bid", "ask", "vol"]) cells[name] = el("td", { class: "num" });
    const remove = el("button", { class: "icon", type: "button", title: `Remove ${symbol}`, text: "×",
      onclick: (event) => { event.stopPropagation(); save(symbols.filter((s) => s !== symbol)); } });
    const tr = el("tr", { dataset: { symbol }, onclick: () => ctx.select(symbol) },
      el("td", { class: "sym", text: symbol }), cells.last, cells.chg, cells.pct, cells.bid, cells.ask, cells.vol,
      el("td", {}, remove));
    return { tr, cells, symbol, last: null, ref: null, previous: null, bid: null, ask: null };
  }

  function showLast(r, value) {
    const moved = r.last === null ? 0 : Math.sign(value - r.last);
    r.last = value;
    const digits = digitsFor(value);
    setText(r.cells.last, price(value, digits));
    flash(r.cells.last, moved);
    if (r.ref) {
      const diff = value - r.ref;
      setText(r.cells.chg, change(diff, digits));
      setText(r.cells.pct, percent((diff / r.ref) * 100));
      setSign(r.cells.chg, diff);
      setSign(r.cells.pct, diff);
    }
    ctx.dispatchEvent(new CustomEvent("tick"));
  }

  function onQuote(quote) {
    ctx.quotes.set(quote.symbol, quote);
    ctx.dispatchEvent(new CustomEvent("quote", { detail: quote }));
    if (rows.has(quote.symbol)) showQuote(rows.get(quote.symbol), quote);
  }

  function showQuote(r, quote) {
    for (const side of ["bid", "ask"]) {
      const value = quote[`${side}Price`];
      if (typeof value !== "number") continue;
      flash(r.cells[side], r[side] === null ? 0 : Math.sign(value - r[side]));
      r[side] = value;
      setText(r.cells[side], price(value, digitsFor(value)));
    }
    ctx.dispatchEvent(new CustomEvent("tick"));
  }

  async function loadPrevious() {
    if (!symbols.length) return;
    const variables = {};
    symbols.forEach((s, i) => { variables[`s${i}`] = s; });
    try {
      const data = await ctx.request(previousCloses(symbols.length), variables);
      symbols.forEach((symbol, i) => {
        const days = data[`d${i}`] || [];
        const r = rows.get(symbol);
        if (r && days.length === 2 && days[0].final) r.previous = days[0].close;
      });
    } catch (error) {
      say(status, describe(error), "error");
    }
  }

  async function refresh() {
    if (!symbols.length) return;
    try {
      const data = await ctx.request(SNAPSHOTS, { s: symbols });
      data.snapshots.forEach((snap) => {
        const r = rows.get(snap.symbol);
        if (!r) return;
        r.ref = r.previous ?? snap.day?.open ?? null;
        r.tr.classList.toggle("stale", snap.stale);
        r.tr.title = snap.stale ? `${snap.symbol}: no update recently (stale)` : "";
        setText(r.cells.vol, volume(snap.day?.volume));
        if (r.bid === null && snap.quote) showQuote(r, snap.quote);
        if (snap.lastTrade && (!streamingTrades || r.last === null || r.cells.chg.textContent === "")) {
          showLast(r, snap.lastTrade.price);
        }
      });
      if (status.dataset.kind === "error") say(status, "");
    } catch (error) {
      say(status, describe(error), "error");
    }
  }

  function stream() {
    const wanted = [...new Set([...symbols, ctx.symbol])];
    if (wanted.join() === streamed.join()) return;
    stopStreams();
    streamed = wanted;
    const onError = (error) => say(status, describe(error), "error");
    const stopQuotes = ctx.subscribe(QUOTES, { s: wanted }, { next: (data) => onQuote(data.quotes), error: onError });
    const stopTrades = streamingTrades && symbols.length
      ? ctx.subscribe(TRADES, { s: symbols }, {
        next: (data) => { if (rows.has(data.trades.symbol)) showLast(rows.get(data.trades.symbol), data.trades.price); },
        error: onError,
      })
      : () => undefined;
    stopStreams = () => { stopQuotes(); stopTrades(); streamed = []; };
  }

  // Without a trades stream, the charted symbol's last price comes from its bars.
  const onLast = (event) => {
    const { symbol, price: last } = event.detail;
    if (!streamingTrades && rows.has(symbol)) showLast(rows.get(symbol), last);
  };

  function render() {
    body.textContent = "";
    for (const symbol of symbols) {
      if (!rows.has(symbol)) rows.set(symbol, row(symbol));
      body.append(rows.get(symbol).tr);
    }
    for (const symbol of [...rows.keys()]) if (!symbols.includes(symbol)) rows.delete(symbol);
    highlight();
  }

  function highlight() {
    for (const r of rows.values()) r.tr.classList.toggle("selected", r.symbol === ctx.symbol);
  }

  function save(list) {
    symbols = [...new Set(list)];
    localStorage.setItem(STORE_KEY, JSON.stringify(symbols));
    render();
    stream();
    loadPrevious().then(refresh);
  }

  function onSymbol() {
    highlight();
    if (symbols.length) stream();
  }

  form.addEventListener("submit", onAdd);
  function onAdd(event) {
    event.preventDefault();
    const input = byId("watch-symbol");
    const symbol = input.value.trim().toUpperCase();
    if (!/^[A-Z][A-Z0-9.\-]{0,11}$/.test(symbol)) {
      say(status, `"${input.value}" is not a symbol`, "error");
      return;
    }
    input.value = "";
    if (!symbols.includes(symbol)) save([...symbols, symbol]);
    ctx.select(symbol);
  }
  ctx.addEventListener("symbol", onSymbol);
  ctx.addEventListener("last", onLast);

  (async () => {
    let saved = null;
    try { saved = JSON.parse(localStorage.getItem(STORE_KEY) || "null"); } catch { saved = null; }
    if (!Array.isArray(saved) || !saved.length) {
      try {
        const data = await ctx.request(UNIVERSE);
        saved = data.symbols.filter((s) => s.inUniverse).map((s) => s.symbol).slice(0, 12);
      } catch (error) {
        say(status, describe(error), "error");
        saved = [ctx.symbol];
      }
    }
    save(saved);
    timer = setInterval(refresh, REFRESH_MS);
  })();

  return () => {
    stopStreams();
    clearInterval(timer);
    form.removeEventListener("submit", onAdd);
    ctx.removeEventListener("symbol", onSymbol);
    ctx.removeEventListener("last", onLast);
    body.textContent = "";
  };
}
