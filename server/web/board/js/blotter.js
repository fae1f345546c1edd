// Positions with live P&L, orders (cancel), fills, and the account strip of the top
// bar. Orders come from the `orders` query and then `orderUpdates`, which is resumed
// from its last cursor after a reconnect so no change or fill is missed. The account
// and its positions stream, revalued as they trade (`account`), when the tier leaves
// room for that subscription, and are read every few seconds otherwise (and at once
// after each fill). Money stays a decimal string.

import { describe } from "./api.js";
import { byId, el, say, setSign, setText } from "./dom.js";
import { dateTime, decimal, money, signOf, time } from "./format.js";

const ORDER = `id symbol side type orderClass legRole qty filledQty limitPrice stopPrice avgFillPrice
  status createdAt updatedAt`;
const ORDERS = `query BlotterOrders { orders(first: 100) { edges { node { ${ORDER} } } } }`;
const UPDATES = `subscription BlotterUpdates($after: String) { orderUpdates(after: $after) {
  cursor kind reason order { ${ORDER} } fill { id orderId symbol side qty price commission at } } }`;
const ACCOUNT_FIELDS = `equity cash buyingPower unrealizedPnl realizedPnl positions {
  symbol side qty avgEntryPrice mark marketValue unrealizedPnl unrealizedPnlPercent realizedPnl }`;
const ACCOUNT = `subscription BlotterAccount { account(throttleMs: 500) { ${ACCOUNT_FIELDS} } }`;
const ACCOUNT_POLL = `query BlotterAccount { account { ${ACCOUNT_FIELDS} } }`;
const POLL_MS = 4000;
const CANCEL = "mutation Cancel($id: ID!) { cancelOrder(id: $id) { id status } }";
const CANCEL_ALL = "mutation CancelAll { cancelAllOrders { id } }";
const CLOSE = "mutation Close($s: String!) { closePosition(symbol: $s) { id status } }";
const OPEN = new Set(["PENDING_NEW", "ACCEPTED", "HELD", "NEW", "PARTIALLY_FILLED", "PENDING_CANCEL",
  "PENDING_REPLACE", "DONE_FOR_DAY"]);
const MAX_FILLS = 200;

function moneyCell(value, { signed = false } = {}) {
  const td = el("td", { class: "num", text: money(value, { signed }) });
  if (signed) setSign(td, signOf(value));
  return td;
}

export function startBlotter(ctx) {
  const status = byId("blotter-status");
  const tables = { positions: byId("positions-table"), orders: byId("orders-table"), fills: byId("fills-table") };
  const orders = new Map();
  ctx.orders = orders; // the newest state of each order, for the ticket
  const positions = new Map();
  const fills = [];
  let cursor = null;

  const act = (what, promise) => promise.then(
    () => say(status, ""),
    (error) => { say(status, `${what}: ${describe(error)}`, "error"); ctx.notify(`${what}: ${describe(error)}`, "error"); });

  function renderOrders() {
    const list = [...orders.values()].sort((a, b) =>
      (OPEN.has(b.status) - OPEN.has(a.status)) || b.updatedAt - a.updatedAt);
    const rows = list.map((o) => {
      const open = OPEN.has(o.status);
      const cancel = open && o.status !== "PENDING_CANCEL"
        ? el("button", { type: "button", class: "icon", title: "Cancel this order", text: "Cancel",
          onclick: () => act("cancel", ctx.request(CANCEL, { id: o.id })) })
        : null;
      return el("tr", { class: open ? "open" : "done", dataset: { id: o.id, status: o.status } },
        el("td", { text: time(o.createdAt), title: dateTime(o.createdAt) }),
        el("td", { class: "sym", text: o.symbol }),
        el("td", { class: o.side === "BUY" ? "up" : "down", text: o.side }),
        el("td", { text: o.type.replace("_", " ") }),
        el("td", { text: o.orderClass === "SIMPLE" ? "" : `${o.orderClass} ${o.legRole.replace("_", " ")}` }),
        el("td", { class: "num", text: decimal(o.qty) }),
        el("td", { class: "num", text: decimal(o.filledQty) }),
        el("td", { class: "num", text: decimal(o.limitPrice) }),
        el("td", { class: "num", text: decimal(o.stopPrice) }),
        el("td", { class: "num", text: decimal(o.avgFillPrice) }),
        el("td", { class: `st st-${o.status.toLowerCase()}`, text: o.status.replace("_", " ") }),
        el("td", {}, cancel));
    });
    tables.orders.tBodies[0].replaceChildren(...rows);
    setText(byId("count-orders"), list.filter((o) => OPEN.has(o.status)).length);
  }

  function renderPositions() {
    const rows = [...positions.values()].sort((a, b) => a.symbol.localeCompare(b.symbol)).map((p) =>
      el("tr", { dataset: { symbol: p.symbol }, onclick: () => ctx.select(p.symbol) },
        el("td", { class: "sym", text: p.symbol }),
        el("td", { class: p.side === "SHORT" ? "down" : "up", text: p.side || "" }),
        el("td", { class: "num", text: decimal(p.qty) }),
        el("td", { class: "num", text: decimal(p.avgEntryPrice) }),
        el("td", { class: "num", text: decimal(p.mark) }),
        moneyCell(p.marketValue),
        moneyCell(p.unrealizedPnl, { signed: true }),
        el("td", { class: "num", text: p.unrealizedPnlPercent === null ? "—" : `${decimal(p.unrealizedPnlPercent, { signed: true })}%` }),
        moneyCell(p.realizedPnl, { signed: true }),
        el("td", {}, el("button", { type: "button", class: "icon", text: "Close", title: `Close the ${p.symbol} position at market`,
          onclick: (event) => { event.stopPropagation(); act("close", ctx.request(CLOSE, { s: p.symbol })); } }))));
    tables.positions.tBodies[0].replaceChildren(...rows);
    setText(byId("count-positions"), positions.size);
  }

  function renderFills() {
    const rows = fills.map((f) => el("tr", { dataset: { id: f.id } },
      el("td", { text: time(f.at), title: dateTime(f.at) }),
      el("td", { class: "sym", text: f.symbol }),
      el("td", { class: f.side === "BUY" ? "up" : "down", text: f.side }),
      el("td", { class: "num", text: decimal(f.qty) }),
      el("td", { class: "num", text: decimal(f.price) }),
      moneyCell(f.commission),
      el("td", { class: "muted", text: f.orderId.slice(0, 8) })));
    tables.fills.tBodies[0].replaceChildren(...rows);
    setText(byId("count-fills"), fills.length);
  }

  function keep(order) {
    const known = orders.get(order.id);
    if (!known || order.updatedAt >= known.updatedAt) orders.set(order.id, order);
  }

  function onUpdate({ orderUpdates: u }) {
    cursor = u.cursor;
    ctx.dispatchEvent(new CustomEvent("orderupdate", { detail: u }));
    keep(u.order);
    renderOrders();
    if (u.fill && !fills.some((f) => f.id === u.fill.id)) {
      fills.unshift(u.fill);
      fills.length = Math.min(fills.length, MAX_FILLS);
      renderFills();
      const f = u.fill;
      ctx.notify(`Filled: ${f.side} ${decimal(f.qty)} ${f.symbol} @ ${decimal(f.price)}`, "ok");
      if (pollAccount) pollAccount();
    } else if (u.kind === "REJECTED" || u.kind === "CANCELED" || u.kind === "EXPIRED") {
      ctx.notify(`${u.order.symbol} ${u.order.side} order ${u.kind.toLowerCase()}${u.reason ? `: ${u.reason}` : ""}`,
        u.kind === "REJECTED" ? "error" : "info");
    }
  }

  async function loadOrders() {
    try {
      const data = await ctx.request(ORDERS);
      for (const edge of data.orders.edges) keep(edge.node);
      renderOrders();
    } catch (error) {
      say(status, describe(error), "error");
    }
  }

  const stopUpdates = ctx.subscribe(UPDATES, () => ({ after: cursor }), {
    next: onUpdate,
    // Too far behind to resume, or refused for a while: read the orders again and
    // follow from now.
    retrying: (error) => {
      say(status, describe(error), "error");
      cursor = null;
      loadOrders();
    },
    error: (error) => say(status, describe(error), "error"),
  });
  loadOrders();

  function onAccount({ account: a }) {
    setText(byId("acct-equity"), money(a.equity));
    setText(byId("acct-cash"), money(a.cash));
    setText(byId("acct-bp"), money(a.buyingPower));
    for (const [id, value] of [["acct-upnl", a.unrealizedPnl], ["acct-rpnl", a.realizedPnl]]) {
      setText(byId(id), money(value, { signed: true }));
      setSign(byId(id), signOf(value));
    }
    positions.clear();
    for (const p of a.positions) if (p.side !== null && signOf(p.qty) !== 0) positions.set(p.symbol, p);
    renderPositions();
  }
  let pollAccount = null;
  let stopAccount;
  if (ctx.canStream("account")) {
    stopAccount = ctx.subscribe(ACCOUNT, {}, { next: onAccount });
  } else {
    pollAccount = () => ctx.request(ACCOUNT_POLL).then(onAccount, (error) => say(status, describe(error), "error"));
    const polling = setInterval(pollAccount, POLL_MS);
    pollAccount();
    stopAccount = () => clearInterval(polling);
  }

  const tabs = document.querySelectorAll(".blotter [data-tab]");
  const onTab = (event) => {
    const tab = event.target.closest("button[data-tab]");
    if (!tab) return;
    for (const node of tabs) {
      if (node.tagName === "BUTTON") node.classList.toggle("active", node === tab);
      else node.hidden = node.dataset.tab !== tab.dataset.tab;
    }
  };
  const onCancelAll = () => act("cancel all", ctx.request(CANCEL_ALL));
  document.querySelector(".blotter .tabs").addEventListener("click", onTab);
  byId("cancel-all").addEventListener("click", onCancelAll);

  return () => {
    stopUpdates();
    stopAccount();
    document.querySelector(".blotter .tabs").removeEventListener("click", onTab);
    byId("cancel-all").removeEventListener("click", onCancelAll);
    for (const table of Object.values(tables)) table.tBodies[0].textContent = "";
    for (const id of ["acct-equity", "acct-cash", "acct-bp", "acct-upnl", "acct-rpnl"]) setText(byId(id), "—");
  };
}
