// The connection pills and the banner: the WebSocket's own state (reconnecting, with
// its countdown), the server's market-data feed (feedStatus), and silence (no market
// message for a while although both say connected). Whenever one of them is wrong the
// banner says so and the board's prices are dimmed as stale.

import { byId, setText } from "./dom.js";
import { time } from "./format.js";

const FEED_FIELDS = "source state since lastError reconnects nextRetryAt";
const FEED = `subscription Feed { feedStatus { ${FEED_FIELDS} } }`;
const FEED_POLL = `query Feed { feedStatus { ${FEED_FIELDS} } }`;
/** How often the feed's state is read when the tier leaves no room to stream it. */
const POLL_MS = 15000;
/** No market message for this long while everything says connected: stale. */
const SILENT_MS = 15000;

export function startStatus(ctx) {
  const conn = byId("conn");
  const feedPill = byId("feed");
  const banner = byId("banner");
  const board = byId("board");
  let socketState = ctx.socket.state;
  let feed = null;
  let lastTick = Date.now();

  const onState = (event) => {
    socketState = event.detail;
    if (socketState.name === "open") lastTick = Date.now();
    render();
  };
  const onTick = () => {
    const wasSilent = Date.now() - lastTick > SILENT_MS;
    lastTick = Date.now();
    if (wasSilent) render();
  };
  ctx.socket.addEventListener("state", onState);
  ctx.addEventListener("tick", onTick);
  const onFeed = (data) => {
    feed = data.feedStatus;
    render();
  };
  let stopFeed;
  if (ctx.canStream("feed")) {
    stopFeed = ctx.subscribe(FEED, {}, { next: onFeed });
  } else {
    const poll = () => ctx.request(FEED_POLL).then(onFeed, () => undefined);
    const polling = setInterval(poll, POLL_MS);
    poll();
    stopFeed = () => clearInterval(polling);
  }
  const timer = setInterval(render, 1000);

  function socketProblem() {
    const s = socketState;
    if (s.name === "open") return null;
    if (s.name === "retrying") {
      const wait = Math.max(0, Math.ceil((s.retryAt - Date.now()) / 1000));
      const why = s.reason ? ` (${s.reason})` : "";
      return `Disconnected from the server${why}: reconnecting in ${wait}s, attempt ${s.attempt}.`;
    }
    return "Connecting to the server…";
  }

  function feedProblem() {
    if (!feed || feed.state === "CONNECTED") return null;
    const parts = [`The market-data feed (${feed.source}) is ${feed.state} since ${time(feed.since)}`];
    if (feed.reconnects) parts.push(`${feed.reconnects} reconnects`);
    if (feed.lastError) parts.push(`last error: ${feed.lastError}`);
    if (feed.nextRetryAt) parts.push(`next try ${time(feed.nextRetryAt)}`);
    return parts.join("; ") + ".";
  }

  function render() {
    const socketIssue = socketProblem();
    const feedIssue = socketIssue ? null : feedProblem();
    const silentFor = Date.now() - lastTick;
    const silent = !socketIssue && !feedIssue && silentFor > SILENT_MS
      ? `No market data for ${Math.round(silentFor / 1000)}s: prices may be stale.` : null;
    const problem = socketIssue || feedIssue || silent;

    conn.dataset.level = socketState.name === "open" ? "ok" : socketState.name === "retrying" ? "bad" : "warn";
    setText(conn, socketState.name === "open" ? "live" : socketState.name === "retrying" ? "offline" : "connecting…");
    feedPill.dataset.level = !feed ? "warn" : feed.state === "CONNECTED" ? (silent ? "warn" : "ok") : "bad";
    setText(feedPill, feed ? `${feed.source} ${feed.state.toLowerCase()}` : "feed …");

    const stale = Boolean(problem) && socketState.name !== "connecting";
    board.classList.toggle("stale", stale);
    banner.hidden = !problem || socketState.name === "connecting" && !socketState.attempt;
    banner.dataset.level = socketIssue || feedIssue ? "bad" : "warn";
    setText(banner, problem ? problem + (stale ? " Prices, P&L and orders shown may be out of date." : "") : "");
  }

  render();
  return () => {
    stopFeed();
    clearInterval(timer);
    ctx.socket.removeEventListener("state", onState);
    ctx.removeEventListener("tick", onTick);
    banner.hidden = true;
  };
}
