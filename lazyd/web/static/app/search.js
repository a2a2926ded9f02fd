// Searching every transcript of the user; a hit opens its transcription at that moment.

import {call} from "./api.js";
import {clock, h, notice, show, snippet} from "./dom.js";

const PAGE_SIZE = 20;

export async function render(root, {query}) {
  document.title = "Search · lazyd";
  const words = query.get("q") || "";
  const box = h("input", {type: "search", id: "q", name: "q", value: words, required: true,
                          placeholder: "a word or a phrase"});
  const results = h("div", {"aria-live": "polite"});
  const form = h("form", {role: "search", class: "card", onsubmit: (event) => {
    event.preventDefault();
    location.hash = `#/search?${new URLSearchParams({q: box.value.trim()})}`;
  }},
  h("h1", {}, h("label", {for: "q"}, "Search your transcripts")),
  h("div", {class: "inline"}, box, h("button", {type: "submit"}, "Search")));
  show(root, form, results);
  box.focus();
  if (words.trim()) await showHits(results, words, 1);
  return null;
}

async function showHits(results, words, page) {
  let body;
  try {
    body = await call("GET", "/search", {query: {q: words, page, size: PAGE_SIZE}});
  } catch (error) {
    show(results, notice(error.message, "error"));
    return;
  }
  const list = h("ol", {class: "hits", start: (page - 1) * PAGE_SIZE + 1}, body.hits.map((hit) => h("li", {},
    h("a", {href: `#/t/${hit.transcription_id}?at=${hit.start}`},
      h("span", {class: "title"}, hit.title || `Transcription ${hit.transcription_id}`),
      h("span", {class: "time"}, clock(hit.start))),
    h("p", {class: "snippet"}, snippet(hit.snippet)))));
  const more = page < body.pages
    ? h("button", {type: "button", class: "quiet", onclick: () => showHits(results, words, page + 1)}, "Next page")
    : null;
  const back = page > 1
    ? h("button", {type: "button", class: "quiet", onclick: () => showHits(results, words, page - 1)},
      "Previous page")
    : null;
  const count = body.total === 1 ? "1 passage" : `${body.total} passages`;
  show(results, h("p", {class: "hint"}, body.total ? `${count} found` : "Nothing found."), list,
       h("div", {class: "actions"}, back, more));
}
