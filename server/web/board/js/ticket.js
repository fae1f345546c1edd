// The order ticket: market, limit, stop and stop-limit orders, simple or bracket, sent
// with placeOrder. Quantities and prices go to the API as the decimal strings typed
// (never through a binary float); the API's refusal is shown with its code, and a
// limit far from the last trade (PRICE_OUT_OF_BAND) can be confirmed and sent again.

import { describe } from "./api.js";
import { byId, el, on, say, setText } from "./dom.js";
import { digitsFor, price } from "./format.js";

const PLACE = `mutation PlaceOrder($input: OrderInput!, $key: String, $confirm: Boolean!) {
  placeOrder(input: $input, idempotencyKey: $key, confirm: $confirm) {
    id symbol side type status qty limitPrice stopPrice orderClass filledQty avgFillPrice updatedAt } }`;
const DECIMAL = /^\d{1,14}(\.\d{1,9})?$/;
const NEEDS = {
  MARKET: [], LIMIT: ["limit"], STOP: ["stop"], STOP_LIMIT: ["limit", "stop"],
};

/** A fresh key per click: a network retry of it can never place a second order.
 *  (crypto.randomUUID exists only in secure contexts; plain http on a LAN is not.) */
function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return "board-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function startTicket(ctx) {
  const form = byId("ticket");
  const status = byId("ticket-status");
  const confirm = byId("ticket-confirm");
  const submit = byId("ticket-submit");
  const quoteBox = byId("ticket-quote");
  const f = form.elements;
  let side = "BUY";
  let pending = null;
  let quote = null;
  let placed = null;

  function layout() {
    const needs = new Set(NEEDS[f.type.value]);
    if (f.bracket.checked) needs.add("bracket");
    for (const label of form.querySelectorAll("[data-needs]")) label.hidden = !needs.has(label.dataset.needs);
    for (const b of form.querySelectorAll("[data-side]")) b.classList.toggle("active", b.dataset.side === side);
    submit.className = `submit ${side === "BUY" ? "buy" : "sell"}`;
    const what = [side === "BUY" ? "Buy" : "Sell", f.qty.value.trim(), f.symbol.value.trim().toUpperCase()];
    setText(submit, what.filter(Boolean).join(" ") + (f.bracket.checked ? " · bracket" : ""));
  }

  function input() {
    const type = f.type.value;
    const needs = NEEDS[type];
    const order = { symbol: f.symbol.value.trim().toUpperCase(), side, type, timeInForce: f.tif.value,
      qty: f.qty.value.trim() };
    if (needs.includes("limit")) order.limitPrice = f.limitPrice.value.trim();
    if (needs.includes("stop")) order.stopPrice = f.stopPrice.value.trim();
    if (f.bracket.checked) {
      order.orderClass = "BRACKET";
      order.takeProfit = { limitPrice: f.takeProfit.value.trim() };
      order.stopLoss = { stopPrice: f.stopLoss.value.trim() };
    }
    const checks = [["qty", order.qty], ["limit price", order.limitPrice], ["stop price", order.stopPrice],
      ["take-profit", order.takeProfit?.limitPrice], ["stop-loss", order.stopLoss?.stopPrice]];
    for (const [name, value] of checks) {
      if (value !== undefined && !DECIMAL.test(value)) throw new Error(`the ${name} must be a positive decimal number, e.g. 10 or 230.25`);
    }
    return order;
  }

  async function send(order, confirmed) {
    submit.disabled = true;
    confirm.hidden = true;
    say(status, "Sending…");
    try {
      const key = idempotencyKey();
      const { placeOrder: o } = await ctx.request(PLACE, { input: order, key, confirm: confirmed });
      // Its updates may have come first (the blotter keeps them): show the newest.
      const known = ctx.orders.get(o.id);
      placed = known && known.updatedAt >= o.updatedAt ? { ...o, ...known } : o;
      showPlaced();
    } catch (error) {
      say(status, describe(error), "error");
      if (error.code === "PRICE_OUT_OF_BAND") {
        pending = order;
        confirm.hidden = false;
      }
    } finally {
      submit.disabled = false;
    }
  }

  function showPlaced(reason = null) {
    const o = placed;
    const at = o.limitPrice ? ` @ ${o.limitPrice}` : o.stopPrice ? ` stop ${o.stopPrice}` : "";
    const filled = o.avgFillPrice ? ` ${o.filledQty} at ${o.avgFillPrice}` : "";
    const state = `${o.status.replace("_", " ")}${filled}${reason ? ` (${reason})` : ""}`;
    say(status, `${o.side} ${o.qty} ${o.symbol} ${o.type}${at}: ${state}`, o.status === "REJECTED" ? "error" : "ok");
  }

  // What became of the order just placed (orderUpdates, through the blotter).
  function onOrderUpdate(event) {
    const u = event.detail;
    if (!placed || u.order.id !== placed.id) return;
    placed = { ...placed, ...u.order };
    showPlaced(u.reason);
  }

  function onSubmit(event) {
    event.preventDefault();
    let order;
    try {
      order = input();
    } catch (error) {
      say(status, error.message, "error");
      return;
    }
    send(order, false);
  }

  function showQuote() {
    quoteBox.textContent = "";
    if (!quote) return;
    const bid = el("button", { type: "button", class: "px down", title: "Use the bid as the limit",
      text: `${price(quote.bidPrice, digitsFor(quote.bidPrice))} × ${quote.bidSize}`,
      onclick: () => { f.limitPrice.value = price(quote.bidPrice, digitsFor(quote.bidPrice)); } });
    const ask = el("button", { type: "button", class: "px up", title: "Use the ask as the limit",
      text: `${price(quote.askPrice, digitsFor(quote.askPrice))} × ${quote.askSize}`,
      onclick: () => { f.limitPrice.value = price(quote.askPrice, digitsFor(quote.askPrice)); } });
    quoteBox.append(bid, " / ", ask);
  }

  // The selected symbol's quotes come with the watchlist's subscription.
  function onQuote(event) {
    const q = event.detail;
    if (q.symbol !== f.symbol.value.trim().toUpperCase()) return;
    quote = q;
    showQuote();
    if (!f.limitPrice.value) {
      const start = side === "BUY" ? q.bidPrice : q.askPrice;
      f.limitPrice.value = price(start, digitsFor(start));
    }
  }

  function follow() {
    f.symbol.value = ctx.symbol;
    f.limitPrice.value = "";
    quote = null;
    showQuote();
    const known = ctx.quotes.get(ctx.symbol);
    if (known) onQuote({ detail: known });
    layout();
  }

  const onSide = (event) => {
    const button = event.target.closest("[data-side]");
    if (!button) return;
    side = button.dataset.side;
    layout();
  };
  const onConfirm = () => { if (pending) send(pending, true); };
  const listeners = [
    on(form, "click", onSide),
    on(form, "input", layout),
    on(form, "submit", onSubmit),
    on(confirm, "click", onConfirm),
    on(ctx, "symbol", follow),
    on(ctx, "quote", onQuote),
    on(ctx, "orderupdate", onOrderUpdate),
  ];
  follow();

  return () => {
    for (const off of listeners) off();
  };
}
