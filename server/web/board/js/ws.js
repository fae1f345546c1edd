// A graphql-transport-ws client that stays connected: it reconnects by itself with
// equal-jitter exponential backoff, sends every live subscription again on each new
// connection, and pings the server so a connection that died silently is noticed.
// (graphql-ws, which GraphiQL uses, treats the server's 4403 "token expired" as fatal
// and ends every subscription; here the board renews the token and carries on.)

const PROTOCOL = "graphql-transport-ws";
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 15000;
const ACK_TIMEOUT_MS = 10000;
const PING_EVERY_MS = 15000;
const PONG_TIMEOUT_MS = 10000;

/** Wire errors of one operation, as an Error with the first one's extensions.code. */
export class OperationError extends Error {
  constructor(errors) {
    const list = Array.isArray(errors) ? errors : [{ message: String(errors) }];
    super(list.map((e) => e.message).join("; "));
    this.code = list[0]?.extensions?.code || "ERROR";
    this.errors = list;
  }
}

export class Socket extends EventTarget {
  /**
   * @param {string} url ws(s)://host/graphql
   * @param {() => Promise<object>} initPayload the connection_init payload, asked for
   *   on every connection (so a renewed access token is used)
   */
  constructor(url, initPayload) {
    super();
    this.url = url;
    this.initPayload = initPayload;
    this.ops = new Map();
    this.nextId = 1;
    this.ws = null;
    this.acked = false;
    this.attempt = 0;
    /** Connections acknowledged so far (the first, then one per reconnect). */
    this.connections = 0;
    this.stopped = false;
    this.timers = {};
    this.state = { name: "connecting", attempt: 0 };
    this.connect();
  }

  /**
   * Start a subscription; returns a function that ends it. `variables` may be a
   * function, called on every (re)subscription (e.g. to resume from a cursor).
   * `resubscribe: false` ends the operation with an error when its connection drops
   * (an analysis must not silently start again and be charged twice).
   */
  subscribe(query, variables, sink, { resubscribe = true } = {}) {
    const id = String(this.nextId++);
    const op = { id, query, variables, sink, resubscribe };
    this.ops.set(id, op);
    if (this.acked) this.send(op);
    return () => {
      if (!this.ops.delete(id)) return;
      if (this.acked) this.raw({ id, type: "complete" });
    };
  }

  /** Close now and connect again at once (after the access token changed). */
  reconnectNow() {
    if (this.stopped) return;
    this.attempt = 0;
    if (this.ws) this.drop(4499, "reconnecting");
    else this.connect();
  }

  /** Close for good: every operation is forgotten. */
  close() {
    this.stopped = true;
    this.ops.clear();
    this.clearTimers();
    if (this.ws) this.ws.close(1000, "bye");
    this.setState({ name: "closed" });
  }

  // -- connection ---------------------------------------------------------------------

  connect() {
    if (this.stopped) return;
    this.clearTimers();
    this.acked = false;
    this.setState({ name: "connecting", attempt: this.attempt });
    const ws = new WebSocket(this.url, PROTOCOL);
    this.ws = ws;
    ws.onopen = async () => {
      let payload;
      try {
        payload = await this.initPayload();
      } catch (error) {
        this.dispatchEvent(new CustomEvent("autherror", { detail: error }));
        ws.close(4499, "no credentials");
        return;
      }
      if (this.ws !== ws) return;
      this.raw({ type: "connection_init", payload });
      this.timers.ack = setTimeout(() => this.drop(4408, "no acknowledgement"), ACK_TIMEOUT_MS);
    };
    ws.onmessage = (event) => this.receive(ws, event.data);
    ws.onclose = (event) => this.closed(ws, event);
  }

  receive(ws, data) {
    if (this.ws !== ws) return;
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      this.drop(4400, "unreadable message");
      return;
    }
    const op = message.id === undefined ? null : this.ops.get(message.id);
    switch (message.type) {
      case "connection_ack":
        clearTimeout(this.timers.ack);
        this.acked = true;
        this.attempt = 0;
        this.connections += 1;
        this.setState({ name: "open" });
        for (const each of this.ops.values()) this.send(each);
        this.ping();
        break;
      case "ping":
        this.raw({ type: "pong" });
        break;
      case "pong":
        clearTimeout(this.timers.pong);
        break;
      case "next":
        if (op) op.sink.next(message.payload);
        break;
      case "error":
        if (op) {
          this.ops.delete(op.id);
          op.sink.error(new OperationError(message.payload));
        }
        break;
      case "complete":
        if (op) {
          this.ops.delete(op.id);
          if (op.sink.complete) op.sink.complete();
        }
        break;
      default:
        break;
    }
  }

  closed(ws, event) {
    if (this.ws !== ws) return;
    this.ws = null;
    this.acked = false;
    this.clearTimers();
    for (const op of [...this.ops.values()]) {
      if (!op.resubscribe) {
        this.ops.delete(op.id);
        op.sink.error(new OperationError([
          { message: "the connection was lost", extensions: { code: "CONNECTION_LOST" } },
        ]));
      }
    }
    if (this.stopped) return;
    // 4403: the server ended the session (token expired, signed out, disabled): the
    // owner decides whether to renew the token or sign out (it calls close()).
    this.dispatchEvent(new CustomEvent("closed", { detail: { code: event.code, reason: event.reason } }));
    if (this.stopped) return;
    const delay = this.attempt === 0 && event.code === 4499 ? 0 : this.backoff();
    this.attempt += 1;
    this.setState({ name: "retrying", attempt: this.attempt, retryAt: Date.now() + delay,
      code: event.code, reason: event.reason });
    this.timers.retry = setTimeout(() => this.connect(), delay);
  }

  backoff() {
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  ping() {
    this.timers.ping = setTimeout(() => {
      if (!this.acked) return;
      this.raw({ type: "ping" });
      this.timers.pong = setTimeout(() => this.drop(4408, "no pong"), PONG_TIMEOUT_MS);
      this.ping();
    }, PING_EVERY_MS);
  }

  drop(code, reason) {
    if (this.ws) this.ws.close(code, reason);
  }

  send(op) {
    const variables = typeof op.variables === "function" ? op.variables() : op.variables;
    this.raw({ id: op.id, type: "subscribe", payload: { query: op.query, variables } });
  }

  raw(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  clearTimers() {
    for (const timer of Object.values(this.timers)) clearTimeout(timer);
    this.timers = {};
  }

  setState(state) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
  }
}
