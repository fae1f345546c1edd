// The board: signs in, opens one WebSocket for every live panel, and starts the panels.
// It uses only the public GraphQL API: HTTP for queries and mutations, the
// graphql-transport-ws protocol for subscriptions.

import { describe } from "./api.js";
import { byId, el } from "./dom.js";
import { Session } from "./session.js";
import { OperationError, Socket } from "./ws.js";
import { startAuth } from "./auth.js";
import { startStatus } from "./status.js";
import { startWatchlist } from "./watchlist.js";
import { startChart } from "./chart.js";
import { startTicket } from "./ticket.js";
import { startBlotter } from "./blotter.js";
import { startAlerts } from "./alerts.js";
import { startAnalysis } from "./analysis.js";

const PANELS = [startStatus, startWatchlist, startChart, startTicket, startBlotter, startAlerts, startAnalysis];
const SYMBOL_KEY = "tickgraph.symbol";
/** Refusals of a subscription that pass by themselves (see Context.subscribe). */
const TRANSIENT = new Set(["RATE_LIMITED", "LIMIT_EXCEEDED", "SLOW_CONSUMER"]);
const PLAN = "query Plan { me { user { tier } limits { concurrentSubscriptions symbolsStreamed } } }";
/** Always streamed: quotes, the chart's bars, order updates, alert firings. */
const CORE_STREAMS = 4;
/** Streamed when the tier's subscription quota leaves room (one is kept for an
 *  analysis), in this order; otherwise polled over HTTP or computed here. */
const OPTIONAL_STREAMS = ["account", "feed", "trades", "indicators"];

/** A short message in the corner; errors stay longer. */
function notify(text, kind = "info") {
  const toast = el("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status", text });
  byId("toasts").prepend(toast);
  setTimeout(() => toast.remove(), kind === "error" ? 12000 : 6000);
}

/** What every panel gets: the API, the socket, the selected symbol, notifications. */
class Context extends EventTarget {
  constructor(session, socket, plan) {
    super();
    this.session = session;
    this.socket = socket;
    this.plan = plan;
    /** The newest quote of each streamed symbol (the watchlist's subscription). */
    this.quotes = new Map();
    /** The newest state of each of the user's orders (the blotter's). */
    this.orders = new Map();
    this.symbol = localStorage.getItem(SYMBOL_KEY) || "AAPL";
    this.notify = notify;
  }

  /** Whether `name` (one of OPTIONAL_STREAMS) gets a subscription on this tier. */
  canStream(name) {
    const room = this.plan.concurrentSubscriptions - CORE_STREAMS - 1;
    return OPTIONAL_STREAMS.indexOf(name) < room;
  }

  request(query, variables) {
    return this.session.request(query, variables);
  }

  /**
   * A subscription: `sink.next(data)` per event; errors (of the operation, or in an
   * event) go to `sink.error`, or are shown when the panel does not handle them.
   * Refusals that pass (the tier's request rate, the subscription quota while an
   * ended one is still being released, a reader that fell behind) are retried with
   * backoff, after `sink.retrying(error)` lets the panel re-read what it missed.
   * `{ resubscribe: false }`: never sent again (an analysis: each one is charged).
   */
  subscribe(query, variables, sink, { resubscribe = true } = {}) {
    const shown = sink.error || ((e) => notify(describe(e), "error"));
    let stop = () => undefined;
    let attempt = 0;
    let timer = null;
    let ended = false;
    const open = () => {
      stop = this.socket.subscribe(query, variables, {
        next: (payload) => {
          attempt = 0;
          if (payload.errors && payload.errors.length) shown(new OperationError(payload.errors));
          if (payload.data) sink.next(payload.data);
        },
        error: (error) => {
          if (ended) return;
          if (!resubscribe || !TRANSIENT.has(error.code)) {
            shown(error);
            return;
          }
          attempt += 1;
          const wait = Math.max(1000 * (error.errors[0]?.extensions?.retryAfter || 0),
            Math.min(30000, 500 * 2 ** attempt) * (0.5 + Math.random() / 2));
          if (sink.retrying) sink.retrying(error);
          else if (attempt > 1) shown(error);
          timer = setTimeout(open, wait);
        },
        complete: sink.complete,
      }, { resubscribe });
    };
    open();
    return () => {
      ended = true;
      clearTimeout(timer);
      stop();
    };
  }

  select(symbol) {
    const clean = String(symbol).trim().toUpperCase();
    if (!clean || clean === this.symbol) return;
    this.symbol = clean;
    localStorage.setItem(SYMBOL_KEY, clean);
    this.dispatchEvent(new CustomEvent("symbol", { detail: clean }));
  }
}

function websocketUrl() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/graphql`;
}

function main() {
  const session = new Session();
  let running = null;

  let starts = 0;
  async function start() {
    const attempt = ++starts;
    let plan = { concurrentSubscriptions: CORE_STREAMS + 1, symbolsStreamed: 10, tier: "FREE" };
    try {
      const { me } = await session.request(PLAN);
      plan = { ...me.limits, tier: me.user.tier };
    } catch (error) {
      notify(`your limits are unknown (${describe(error)}): streaming the essentials only`, "error");
    }
    if (!session.signedIn || running || attempt !== starts) return;
    const socket = new Socket(websocketUrl(), async () => ({ Authorization: await session.authorization() }));
    socket.addEventListener("closed", (event) => {
      const { code, reason } = event.detail;
      if (code !== 4403) return;
      if (reason === "token expired") {
        // Renew, then connect again straight away; subscriptions are sent again.
        session.renew().then(() => socket.reconnectNow(), () => undefined);
      } else {
        session.forget(`the server ended this session: ${reason || "forbidden"}`);
      }
    });
    socket.addEventListener("autherror", () => session.forget("the session could not be renewed"));
    const ctx = new Context(session, socket, plan);
    const stops = PANELS.map((panel) => panel(ctx));
    window.tickgraph.ctx = ctx;
    byId("board").hidden = false;
    running = () => {
      for (const stop of stops.reverse()) stop();
      socket.close();
      byId("board").hidden = true;
    };
  }

  function stop() {
    starts++;
    if (running) running();
    running = null;
  }

  window.tickgraph = { session, ctx: null };
  session.addEventListener("change", (event) => {
    if (event.detail.signedIn) {
      if (!running) start();
    } else {
      stop();
      if (event.detail.reason) notify(event.detail.reason, "error");
    }
  });
  startAuth(session);
}

main();
