// Building the page from data without ever parsing data as HTML: text goes in through
// textContent and attributes through setAttribute, so a symbol, an alert's values or an
// analyst's prose can never become markup (XSS).

export const byId = (id) => document.getElementById(id);

/** el("td", { class: "num", text: "1.23", onclick: f }, child...) */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Listen until the returned function is called. */
export function on(target, type, handler) {
  target.addEventListener(type, handler);
  return () => target.removeEventListener(type, handler);
}

/** Set text only when it changed (no needless layout on every tick). */
export function setText(node, text) {
  const value = String(text);
  if (node.textContent !== value) node.textContent = value;
}

/** Briefly mark a cell as having gone up or down. */
export function flash(node, direction) {
  if (!direction) return;
  node.classList.remove("flash-up", "flash-down");
  void node.offsetWidth; // restart the animation
  node.classList.add(direction > 0 ? "flash-up" : "flash-down");
}

/** Up/down colouring of a signed figure. */
export function setSign(node, sign) {
  node.classList.toggle("up", sign > 0);
  node.classList.toggle("down", sign < 0);
}

/** A status line in a panel: text, and whether it is an error. */
export function say(node, text, kind = "info") {
  node.textContent = text;
  node.dataset.kind = kind;
}
