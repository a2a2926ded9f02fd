// The page's frame: which view the address names (#/..., so that back and forward work), the navigation,
// the one live event stream every view listens to, and the way back to the login.

import {call, loggedIn, onSignOut, signOut} from "./api.js";
import {h, notice, show} from "./dom.js";
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

let routing = 0;

async function route() {
  const mine = ++routing;  // a later navigation (a sign-out, a click) wins over this one's late answers
  leaveView?.();
  leaveView = null;
  const view = h("div");  // each navigation renders into its own: a late one fills a detached element
  main.replaceChildren(view);
  const {path, query} = address();
  if (!loggedIn()) {
    nav.hidden = true;
    const atLogin = ["login", "register"].includes(path[0]);
    const done = () => (atLogin ? (location.hash = "#/") : route());
    leaveView = login.render(view, {register: path[0] === "register", done});
    return;
  }
  try {
    me ??= await call("GET", "/auth/info");
  } catch (error) {
    show(view, notice(error.message, "error"));
    return;
  }
  if (mine !== routing) return;
  showNavigation();
  live.start();
  const [shown, params] = viewFor(path);
  const leave = await shown.render(view, {...params, query, me, live});
  if (mine === routing) leaveView = leave;
  else leave?.();
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
