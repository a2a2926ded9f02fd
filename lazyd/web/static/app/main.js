// The page's frame: which view the address names (#/..., so that back and forward work), the navigation,
// the one live event stream every view listens to, and the way back to the login.

import {call, loggedIn, onSignOut, signOut} from "./api.js";
import {notice, show} from "./dom.js";
import {Live} from "./live.js";
import * as admin from "./admin.js";
import * as list from "./list.js";
import * as login from "./login.js";
import * as search from "./search.js";
import * as transcript from "./transcript.js";

const main = document.querySelector("main");
const nav = document.querySelector("nav");
const live = new Live();
let me = null;
let leaveView = null;

/** "#/t/12?at=30" -> {path: ["t", "12"], query: URLSearchParams("at=30")} */
function address() {
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  return {path: path.split("/").filter(Boolean), query: new URLSearchParams(query)};
}

function viewFor(path) {
  if (path[0] === "t" && /^\d+$/.test(path[1] || "")) return [transcript, {id: Number(path[1])}];
  if (path[0] === "search") return [search, {}];
  if (path[0] === "admin" && me.role === "admin") return [admin, {}];
  return [list, {}];
}

async function route() {
  leaveView?.();
  leaveView = null;
  const {path, query} = address();
  if (!loggedIn()) {
    nav.hidden = true;
    const atLogin = ["login", "register"].includes(path[0]);
    const done = () => (atLogin ? (location.hash = "#/") : route());
    leaveView = login.render(main, {register: path[0] === "register", done});
    return;
  }
  try {
    me ??= await call("GET", "/auth/info");
  } catch (error) {
    show(main, notice(error.message, "error"));
    return;
  }
  showNavigation();
  live.start();
  const [view, params] = viewFor(path);
  leaveView = await view.render(main, {...params, query, me, live});
}

function showNavigation() {
  nav.hidden = false;
  nav.querySelector(".who").textContent = me.username;
  nav.querySelector("[data-admin]").hidden = me.role !== "admin";
  const here = `#/${address().path[0] ?? ""}`;
  for (const link of nav.querySelectorAll("a")) {
    const current = link.getAttribute("href") === here || (here === "#/t" && link.getAttribute("href") === "#/");
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

onSignOut(() => {
  me = null;
  live.stop();
  if (location.hash !== "#/login") location.hash = "#/login";
  else route();
});
nav.querySelector("[data-sign-out]").addEventListener("click", () => signOut());
window.addEventListener("hashchange", route);
route();
