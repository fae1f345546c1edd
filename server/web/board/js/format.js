// Display formatting. Money and quantities arrive as exact decimal strings and are only
// regrouped here, never turned into binary floats; market prices are floats already.

const NY_TIME = new Intl.DateTimeFormat("en-US", {
  timeZone: "America/New_York", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});
const NY_DATE = new Intl.DateTimeFormat("en-US", {
  timeZone: "America/New_York", month: "short", day: "numeric",
});

/** "1234567.5" → "1,234,567.5", "-0.10" → "-0.10"; the digits are kept as sent. */
export function decimal(text, { signed = false } = {}) {
  if (text === null || text === undefined || text === "") return "—";
  const value = String(text);
  const negative = value.startsWith("-");
  const [whole, fraction] = value.replace(/^[-+]/, "").split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const sign = negative ? "-" : signed && !isZero(value) ? "+" : "";
  return sign + grouped + (fraction !== undefined ? "." + fraction : "");
}

/** Money to the cent: "100000" → "100,000.00"; longer fractions are kept. */
export function money(text, options) {
  if (text === null || text === undefined) return "—";
  const value = String(text);
  const [, fraction = ""] = value.split(".");
  const padded = fraction.length >= 2 ? value : value + (fraction ? "" : ".") + "0".repeat(2 - fraction.length);
  return decimal(padded, options);
}

/** -1, 0 or 1 for a decimal string. */
export function signOf(text) {
  if (text === null || text === undefined || isZero(String(text))) return 0;
  return String(text).startsWith("-") ? -1 : 1;
}

function isZero(text) {
  return !/[1-9]/.test(text);
}

export function price(value, digits = 2) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "—";
}

export function percent(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "—";
  return (value > 0 ? "+" : "") + value.toFixed(2) + "%";
}

export function change(value, digits = 2) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "—";
  return (value > 0 ? "+" : "") + value.toFixed(digits);
}

export function volume(value) {
  if (typeof value !== "number") return "—";
  if (value >= 1e9) return (value / 1e9).toFixed(2) + "B";
  if (value >= 1e6) return (value / 1e6).toFixed(2) + "M";
  if (value >= 1e4) return (value / 1e3).toFixed(1) + "K";
  return String(value);
}

/** Epoch milliseconds → New York wall-clock time. */
export function time(ms) {
  return typeof ms === "number" ? NY_TIME.format(new Date(ms)) : "—";
}

export function dateTime(ms) {
  return typeof ms === "number" ? `${NY_DATE.format(new Date(ms))} ${time(ms)}` : "—";
}

/** The digits a market price is shown with ($0.0001 below $1). */
export function digitsFor(value) {
  return typeof value === "number" && Math.abs(value) < 1 ? 4 : 2;
}
