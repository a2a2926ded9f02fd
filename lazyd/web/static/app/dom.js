// Building the page without innerHTML: every text from the server goes in as text, never as markup.

/** An element: h("button", {class: "x", onclick: f}, "text", child...). Attributes that are functions
 *  become listeners; true/false toggle boolean attributes; null and undefined are left out. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === "function") element.addEventListener(name.replace(/^on/, ""), value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  element.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return element;
}

/** 3725.4 -> "1:02:05", 65 -> "1:05". */
export function clock(seconds) {
  const whole = Math.max(0, Math.floor(seconds || 0));
  const hours = Math.floor(whole / 3600), minutes = Math.floor((whole % 3600) / 60), secs = whole % 60;
  const mm = hours ? String(minutes).padStart(2, "0") : String(minutes);
  return `${hours ? hours + ":" : ""}${mm}:${String(secs).padStart(2, "0")}`;
}

/** A duration for people: "45 s", "12 min", "1 h 05 min". */
export function duration(seconds) {
  const whole = Math.round(seconds || 0);
  if (whole < 60) return `${whole} s`;
  const minutes = Math.round(whole / 60);
  if (minutes < 60) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
}

export function localDate(iso) {
  const date = new Date(iso.endsWith("Z") || /[+-]\d\d:\d\d$/.test(iso) ? iso : iso + "Z");
  return date.toLocaleString(undefined, {dateStyle: "medium", timeStyle: "short"});
}

const MARK_START = "\u0002", MARK_END = "\u0003";

/** The search API's snippet (matched words between U+0002 and U+0003) as text with <mark>s. */
export function snippet(text) {
  const parts = [];
  for (const [index, piece] of text.split(MARK_START).entries()) {
    if (index === 0) { parts.push(piece); continue; }
    const [marked, ...rest] = piece.split(MARK_END);
    parts.push(h("mark", {}, marked), rest.join(""));
  }
  return parts;
}

/** Replace what a container shows. */
export function show(container, ...children) {
  container.replaceChildren(...children.flat().filter(Boolean));
  return container;
}

/** A status line that screen readers announce. */
export function notice(text, kind = "info") {
  return h("p", {class: `notice ${kind}`, role: kind === "error" ? "alert" : "status"}, text);
}
