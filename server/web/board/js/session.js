// Who is signed in. The access token lives in memory only; the refresh token is kept
// in sessionStorage (this tab only, gone when it closes) so a reload stays signed in.
// Each refresh token works once: one refresh at a time, and the new pair replaces it.

import { ApiError, graphql } from "./api.js";

const STORE_KEY = "tickgraph.refresh";
const EMAIL_KEY = "tickgraph.email";
/** Renew this long before the access token expires. */
const RENEW_EARLY_MS = 60000;

const PAIR = "accessToken accessTokenExpiresAt refreshToken refreshTokenExpiresAt";
const LOGIN = `mutation Login($e: String!, $p: String!) { login(email: $e, password: $p) { ${PAIR} } }`;
const REGISTER = "mutation Register($e: String!, $p: String!) { register(email: $e, password: $p) { id } }";
const REFRESH = `mutation Refresh($r: String!) { refreshToken(refreshToken: $r) { ${PAIR} } }`;
const LOGOUT = "mutation Logout($r: String!) { logout(refreshToken: $r) }";

export class Session extends EventTarget {
  constructor() {
    super();
    this.access = null;
    this.expiresAt = 0;
    this.email = sessionStorage.getItem(EMAIL_KEY) || "";
    this.renewing = null;
    this.timer = null;
  }

  get signedIn() {
    return this.access !== null;
  }

  async login(email, password) {
    const data = await graphql(LOGIN, { e: email, p: password });
    this.email = email;
    sessionStorage.setItem(EMAIL_KEY, email);
    this.adopt(data.login);
  }

  async register(email, password) {
    await graphql(REGISTER, { e: email, p: password });
    await this.login(email, password);
  }

  /** Sign in again from this tab's refresh token, if it has one; false if not. */
  async restore() {
    if (!sessionStorage.getItem(STORE_KEY)) return false;
    try {
      await this.renew();
      return true;
    } catch {
      this.forget("");
      return false;
    }
  }

  async logout() {
    const refresh = sessionStorage.getItem(STORE_KEY);
    this.forget("signed out");
    if (refresh) await graphql(LOGOUT, { r: refresh }).catch(() => undefined);
  }

  /** The Authorization value, renewed first when it is about to expire. */
  async authorization() {
    if (this.access && Date.now() > this.expiresAt - RENEW_EARLY_MS) await this.renew();
    if (!this.access) throw new ApiError("sign in first", "UNAUTHENTICATED");
    return `Bearer ${this.access}`;
  }

  /** A query or mutation as this user; an expired token is renewed once and retried. */
  async request(query, variables = {}) {
    try {
      return await graphql(query, variables, await this.authorization());
    } catch (error) {
      if (error.code !== "UNAUTHENTICATED" || error.extensions.reason !== "TOKEN_EXPIRED") throw error;
      await this.renew();
      return graphql(query, variables, await this.authorization());
    }
  }

  /** Trade the refresh token for a new pair (one trade at a time). */
  renew() {
    if (!this.renewing) {
      this.renewing = (async () => {
        const refresh = sessionStorage.getItem(STORE_KEY);
        if (!refresh) throw new ApiError("signed out", "UNAUTHENTICATED");
        try {
          this.adopt((await graphql(REFRESH, { r: refresh })).refreshToken);
        } catch (error) {
          // A refused refresh token (expired, reused, revoked) means signing in again;
          // a network error keeps it for the next try.
          if (error.code !== "NETWORK_ERROR") this.forget(`session ended: ${error.message}`);
          throw error;
        }
      })().finally(() => {
        this.renewing = null;
      });
    }
    return this.renewing;
  }

  adopt(pair) {
    const wasSignedIn = this.signedIn;
    this.access = pair.accessToken;
    this.expiresAt = pair.accessTokenExpiresAt;
    sessionStorage.setItem(STORE_KEY, pair.refreshToken);
    clearTimeout(this.timer);
    const due = Math.max(1000, this.expiresAt - Date.now() - RENEW_EARLY_MS);
    this.timer = setTimeout(() => this.renew().catch(() => undefined), due);
    if (!wasSignedIn) this.dispatchEvent(new CustomEvent("change", { detail: { signedIn: true } }));
  }

  forget(reason) {
    const wasSignedIn = this.signedIn;
    this.access = null;
    this.expiresAt = 0;
    clearTimeout(this.timer);
    sessionStorage.removeItem(STORE_KEY);
    if (wasSignedIn) {
      this.dispatchEvent(new CustomEvent("change", { detail: { signedIn: false, reason } }));
    }
  }
}
