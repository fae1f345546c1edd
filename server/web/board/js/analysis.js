// "Analyze": streams an analysis of the selected symbol (the `analysis` subscription)
// into the panel as it is written, then shows the checked result (stance, confidence,
// key levels, a trade idea that can be placed as a bracket order) and what it cost.
// It is never sent again by a reconnect: each one counts against the daily quota.

import { describe } from "./api.js";
import { byId, el, say, setText } from "./dom.js";
import { decimal } from "./format.js";

const ANALYZE = `subscription Analyze($s: String!, $q: String) { analysis(symbol: $s, question: $q) {
  analysisId text
  result { analyst ruleBased stance confidence
    keyLevels { kind price basis }
    tradeIdea { side entry stop target horizon invalidation }
    check { verdict ideaProblems unverifiedFigures { text } } }
  usage { inputTokens outputTokens costUsd cached } } }`;
const PLACE_IDEA = `mutation PlaceIdea($id: ID!, $key: String) {
  placeOrderFromIdea(analysisId: $id, idempotencyKey: $key) { id symbol side qty limitPrice status } }`;

export function startAnalysis(ctx) {
  const button = byId("analyze");
  const question = byId("analysis-question");
  const text = byId("analysis-text");
  const result = byId("analysis-result");
  const status = byId("analysis-status");
  let stop = null;

  function finish(message, kind) {
    stop = null;
    setText(button, "Analyze");
    button.classList.remove("running");
    if (message !== undefined) say(status, message, kind);
  }

  function showResult(analysisId, r) {
    const stance = el("span", { class: `badge ${r.stance.toLowerCase()}`, text: r.stance });
    const head = el("div", { class: "result-head" }, stance,
      el("span", { text: ` ${r.confidence}% confidence · ${r.analyst}` }),
      el("span", { class: `verdict ${r.check.verdict.toLowerCase()}`, text: r.check.verdict.replace("_", " "),
        title: r.check.unverifiedFigures.map((f) => f.text).join(", ") || "every figure checked" }));
    const levels = el("ul", { class: "levels" }, ...r.keyLevels.map((k) =>
      el("li", {}, el("b", { text: k.kind }), ` ${decimal(k.price)} `, el("span", { class: "muted", text: k.basis }))));
    const parts = [head, levels];
    const idea = r.tradeIdea;
    if (idea) {
      const place = el("button", { type: "button", class: idea.side === "BUY" ? "buy" : "sell",
        text: "Place as bracket", onclick: () => placeIdea(analysisId, place) });
      parts.push(el("div", { class: "idea" },
        el("b", { class: idea.side === "BUY" ? "up" : "down", text: idea.side }),
        ` entry ${decimal(idea.entry)} · stop ${decimal(idea.stop)} · target ${decimal(idea.target)} · ${idea.horizon} `,
        place));
    }
    result.replaceChildren(...parts);
  }

  async function placeIdea(analysisId, place) {
    place.disabled = true;
    try {
      const { placeOrderFromIdea: o } = await ctx.request(PLACE_IDEA, { id: analysisId, key: `idea-${analysisId}` });
      say(status, `Idea placed: ${o.side} ${o.qty} ${o.symbol} @ ${o.limitPrice} (${o.status})`, "ok");
    } catch (error) {
      say(status, describe(error), "error");
      place.disabled = false;
    }
  }

  function analyze() {
    if (stop) {
      stop();
      finish("Stopped.");
      return;
    }
    const symbol = ctx.symbol;
    text.textContent = "";
    result.textContent = "";
    const prose = document.createTextNode("");
    text.append(prose);
    setText(button, "Stop");
    button.classList.add("running");
    say(status, `Analyzing ${symbol}…`);
    let analysisId = null;
    stop = ctx.subscribe(ANALYZE, { s: symbol, q: question.value.trim() || null }, {
      next: ({ analysis: chunk }) => {
        analysisId = chunk.analysisId;
        if (chunk.text) {
          prose.appendData(chunk.text);
          text.scrollTop = text.scrollHeight;
        }
        if (chunk.result) showResult(analysisId, chunk.result);
        if (chunk.usage) {
          const u = chunk.usage;
          const cost = u.costUsd === null ? "" : ` · $${u.costUsd}`;
          const spent = u.inputTokens + u.outputTokens
            ? `Done: ${u.inputTokens} tokens in, ${u.outputTokens} out${cost}.` : "Done (no language model: no tokens, no cost).";
          say(status, u.cached ? "Served from the cache (free)." : spent, "ok");
        }
      },
      complete: () => finish(),
      error: (error) => finish(describe(error), "error"),
    }, { resubscribe: false });
  }

  button.addEventListener("click", analyze);
  return () => {
    if (stop) stop();
    finish("");
    button.removeEventListener("click", analyze);
    text.textContent = "";
    result.textContent = "";
  };
}
