// The daemon's HTTP API as the page uses it: the login's tokens, refreshed before they run out, errors
// turned into readable messages, uploads with progress, exports saved as files.

/** Where the API is: the page lives at <base>/app/, so it works behind a proxy that adds a prefix. */
export const BASE = new URL("../", document.baseURI);
const STORE_KEY = "lazyd.session";
const REFRESH_MARGIN_SECS = 60;

export class ApiError extends Error {
  constructor(status, detail) {
    super(readable(detail));
    this.status = status;
  }
}

/** The API's `detail`: a message, or a validation list of {loc, msg}. */
function readable(detail) {
  if (Array.isArray(detail)) {
    return detail.map((item) => `${item.loc.at(-1)}: ${item.msg.replace(/^Value error, /, "")}`).join("; ");
  }
  return String(detail ?? "Something went wrong");
}

/** The tokens are kept in localStorage so that a new tab is still logged in; the strict
 *  Content-Security-Policy and a page that never builds markup from text keep scripts from reading them. */
let session = JSON.parse(localStorage.getItem(STORE_KEY) || "null");
const listeners = new Set();

export function loggedIn() {
  return session !== null;
}

export function onSignOut(listener) {
  listeners.add(listener);
}

function keep(tokens) {
  session = {access_token: tokens.access_token, refresh_token: tokens.refresh_token};
  localStorage.setItem(STORE_KEY, JSON.stringify(session));
}

export function signOut() {
  const wasIn = session !== null;
  session = null;
  localStorage.removeItem(STORE_KEY);
  if (wasIn) for (const listener of listeners) listener();
}

export async function logIn(username, password) {
  keep(await call("POST", "/auth/login", {json: {username, password}, anonymous: true}));
}

export function register(username, password) {
  return call("POST", "/auth/register", {json: {username, password}, anonymous: true});
}

function expiresAt(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).exp || 0;
  } catch {
    return 0;
  }
}

let refreshing = null;

/** A new pair of tokens (one refresh at a time, however many requests wait for it). */
function refresh() {
  refreshing ??= (async () => {
    try {
      const response = await fetch(url("/auth/refresh"), {
        method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({refresh_token: session.refresh_token}),
      });
      if (!response.ok) { signOut(); return false; }
      keep(await response.json());
      return true;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

/** An access token that lasts at least another minute, for the places that cannot retry: a WebSocket,
 *  an <audio> source, an upload. */
export async function freshToken() {
  if (!session) throw new ApiError(401, "Please log in");
  if (expiresAt(session.access_token) - Date.now() / 1000 < REFRESH_MARGIN_SECS && !(await refresh())) {
    throw new ApiError(401, "Please log in again");
  }
  return session.access_token;
}

export function url(path, query = {}) {
  const target = new URL(path.replace(/^\//, ""), BASE);
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") target.searchParams.set(name, value);
  }
  return target;
}

async function failure(response) {
  let detail = response.statusText;
  try {
    detail = (await response.json()).detail ?? detail;
  } catch { /* not JSON: keep the status text */ }
  return new ApiError(response.status, detail);
}

/** One API call; `raw` gives the Response itself (for files). A 401 refreshes the tokens once and retries. */
export async function call(method, path, {query, json, raw = false, anonymous = false} = {}) {
  const send = async () => {
    const headers = {};
    if (!anonymous) headers.Authorization = `Bearer ${await freshToken()}`;
    if (json !== undefined) headers["Content-Type"] = "application/json";
    return fetch(url(path, query), {method, headers, body: json === undefined ? undefined : JSON.stringify(json)});
  };
  let response = await send();
  if (response.status === 401 && !anonymous && session && (await refresh())) response = await send();
  if (response.status === 401 && !anonymous) signOut();
  if (!response.ok) throw await failure(response);
  if (raw) return response;
  if (response.status === 204) return null;
  return (response.headers.get("Content-Type") || "").includes("json") ? response.json() : response.text();
}

/** Every item of a paged list (`key` names the items). */
export async function everything(path, key, query = {}) {
  const items = [];
  for (let page = 1; ; page += 1) {
    const body = await call("GET", path, {query: {...query, page, size: 1000}});
    items.push(...body[key]);
    if (page >= body.pages) return items;
  }
}

/** Upload a recording; `onProgress(fraction)` as it goes. fetch() cannot report upload progress, so this
 *  one request uses XMLHttpRequest. */
export async function upload(file, options, onProgress) {
  const token = await freshToken();
  const form = new FormData();
  for (const [name, value] of Object.entries(options)) if (value) form.append(name, value);
  form.append("audiofile", file, file.name);
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", url("/upload-audiofile"));
    request.setRequestHeader("Authorization", `Bearer ${token}`);
    request.responseType = "json";
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    request.addEventListener("load", () => {
      if (request.status >= 200 && request.status < 300) resolve(request.response);
      else reject(new ApiError(request.status, request.response?.detail ?? request.statusText));
    });
    request.addEventListener("error", () => reject(new ApiError(0, "The upload was interrupted")));
    request.send(form);
  });
}

/** Download a transcript export and hand it to the browser as a file. */
export async function saveExport(transcriptId, format) {
  const response = await call("GET", "/transcript/export", {query: {task_id: transcriptId, format}, raw: true});
  const disposition = response.headers.get("Content-Disposition") || "";
  const named = /filename\*=UTF-8''([^;]+)/i.exec(disposition) || /filename="?([^";]+)"?/i.exec(disposition);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = named ? decodeURIComponent(named[1]) : `transcript-${transcriptId}.${format}`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}
