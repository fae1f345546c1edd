// Alerts: create a price alert on a symbol, list yours (delete), and see them fire:
// the recent history first (alertHistory), then each firing as it happens
// (alertEvents; every firing is stored before it is sent).

import { describe } from "./api.js";
import { byId, el, flash, say } from "./dom.js";
import { dateTime, time } from "./format.js";

const ALERT = "id symbol status enabled definition fireCount lastFiredAt";
const EVENT = "id alertId symbol kind firedAt values suppressedBefore order gap { from to reason }";
const LIST = `query Alerts { alerts { ${ALERT} } alertHistory(limit: 30) { ${EVENT} } }`;
const CREATE = `mutation CreateAlert($input: AlertInput!) { createAlert(input: $input) { ${ALERT} } }`;
const DELETE = "mutation DeleteAlert($id: ID!) { deleteAlert(id: $id) }";
const EVENTS = `subscription AlertEvents { alertEvents { ${EVENT} } }`;
const OPS = { greaterThan: ">", lessThan: "<", crossing: "crosses", crossingUp: "crosses ↑", crossingDown: "crosses ↓",
  movingUp: "moves up", movingDown: "moves down" };
const MAX_LOG = 50;

function operand(left) {
  if (typeof left === "string") return left.toLowerCase();
  if (left && typeof left === "object") return left.key || left.indicator || JSON.stringify(left);
  return "?";
}

/** "last > 230.5" from a stored definition. */
export function describeAlert(definition) {
  const conditions = (definition && definition.conditions) || [];
  return conditions.map((c) => {
    const right = c.value ?? (c.right !== undefined ? operand(c.right) : "…");
    return `${operand(c.left)} ${OPS[c.op] || c.op} ${right}`;
  }).join(" and ");
}

function firingText(event, alerts) {
  if (event.kind === "GAP") {
    return `${event.symbol}: not evaluated ${time(event.gap?.from)}–${time(event.gap?.to)} (${event.gap?.reason})`;
  }
  const alert = alerts.get(event.alertId);
  const seen = (event.values?.conditions || []).map((c) => c.left).filter((v) => typeof v === "number");
  let text = `${event.symbol} ${alert ? describeAlert(alert.definition) : "alert"} fired`;
  if (seen.length) text += ` at ${seen.join(", ")}`;
  if (event.order?.rejected) text += `; order refused: ${event.order.rejected.code}`;
  else if (event.order?.id) text += `; order placed`;
  if (event.suppressedBefore) text += ` (${event.suppressedBefore} more suppressed)`;
  return text;
}

export function startAlerts(ctx) {
  const form = byId("alert-form");
  const status = byId("alert-status");
  const body = byId("alert-table").tBodies[0];
  const log = byId("alert-log");
  const alerts = new Map();

  function renderAlerts() {
    const rows = [...alerts.values()].map((a) => el("tr", { dataset: { id: a.id, status: a.status } },
      el("td", { class: "sym", text: a.symbol }),
      el("td", { text: describeAlert(a.definition) + (a.definition?.trigger?.mode === "everyTime" ? " (every time)" : "") }),
      el("td", { class: `st st-${a.status.toLowerCase()}`, text: a.status }),
      el("td", { class: "num", text: a.fireCount, title: a.lastFiredAt ? `last ${dateTime(a.lastFiredAt)}` : "" }),
      el("td", {}, el("button", { type: "button", class: "icon", text: "×", title: "Delete this alert",
        onclick: () => remove(a.id) }))));
    body.replaceChildren(...rows);
  }

  function addToLog(event, fresh) {
    const item = el("li", { class: event.kind === "GAP" ? "gap" : "fired", dataset: { alertId: event.alertId } },
      el("time", { text: time(event.firedAt), title: dateTime(event.firedAt) }), " ", firingText(event, alerts));
    if (fresh) log.prepend(item); else log.append(item);
    while (log.children.length > MAX_LOG) log.lastElementChild.remove();
    if (fresh) flash(item, 1);
  }

  async function load() {
    try {
      const data = await ctx.request(LIST);
      for (const a of data.alerts) alerts.set(a.id, a);
      renderAlerts();
      log.textContent = "";
      for (const event of data.alertHistory) addToLog(event, false);
    } catch (error) {
      say(status, describe(error), "error");
    }
  }

  async function remove(id) {
    try {
      await ctx.request(DELETE, { id });
      alerts.delete(id);
      renderAlerts();
    } catch (error) {
      say(status, describe(error), "error");
    }
  }

  async function onSubmit(event) {
    event.preventDefault();
    const f = form.elements;
    const [source, op] = f.condition.value.split(" ");
    const value = Number(f.value.value.trim());
    if (!f.value.value.trim() || !Number.isFinite(value)) {
      say(status, "the alert's value must be a number", "error");
      return;
    }
    const input = { symbol: f.symbol.value.trim().toUpperCase(), conditions: [{ left: { price: source }, op, value }],
      trigger: { mode: f.mode.value } };
    try {
      const { createAlert: a } = await ctx.request(CREATE, { input });
      alerts.set(a.id, a);
      renderAlerts();
      say(status, `Alert on ${a.symbol} armed: ${describeAlert(a.definition)}`, "ok");
    } catch (error) {
      say(status, describe(error), "error");
    }
  }

  const stopEvents = ctx.subscribe(EVENTS, {}, {
    next: ({ alertEvents: event }) => {
      addToLog(event, true);
      if (event.kind === "FIRING") {
        ctx.notify(firingText(event, alerts), "alert");
        const known = alerts.get(event.alertId);
        if (known) {
          const once = known.definition?.trigger?.mode === "once";
          alerts.set(event.alertId, { ...known, fireCount: known.fireCount + 1, lastFiredAt: event.firedAt,
            status: once ? "DONE" : known.status });
          renderAlerts();
        }
      }
    },
    // Fell behind (SLOW_CONSUMER) or was refused for a while: the history has what
    // was missed; the subscription is sent again.
    retrying: (error) => {
      say(status, describe(error), "error");
      load();
    },
    error: (error) => say(status, describe(error), "error"),
  });
  const follow = () => { form.elements.symbol.value = ctx.symbol; };
  form.addEventListener("submit", onSubmit);
  ctx.addEventListener("symbol", follow);
  follow();
  load();

  return () => {
    stopEvents();
    form.removeEventListener("submit", onSubmit);
    ctx.removeEventListener("symbol", follow);
    body.textContent = "";
    log.textContent = "";
  };
}
