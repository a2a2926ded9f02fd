// The user's live events (GET /ws), kept open across drops: it reconnects with ?stream&since so that no
// event is lost, and says "resync" when the daemon could not replay (the views then reload over HTTP).

import {freshToken, signOut, url} from "./api.js";

const ACCESS_REVOKED = 4003;
const LONGEST_WAIT_MS = 10_000;

export class Live extends EventTarget {
  #socket = null;
  #stream = null;
  #seq = null;
  #wait = 500;
  #running = false;

  /** Connect, unless already connected or connecting. */
  start() {
    if (this.#running) return;
    this.#running = true;
    this.#connect();
  }

  /** Disconnect and forget the place in the stream: sequence numbers are the user's own. */
  stop() {
    this.#running = false;
    this.#socket?.close(1000);
    this.#socket = null;
    this.#stream = this.#seq = null;
  }

  async #connect() {
    let token;
    try {
      token = await freshToken();
    } catch {
      return;  // logged out: the page shows the login
    }
    if (!this.#running) return;
    const address = url("/ws", {token, stream: this.#stream, since: this.#seq});
    address.protocol = address.protocol === "https:" ? "wss:" : "ws:";
    const socket = this.#socket = new WebSocket(address);
    socket.addEventListener("open", () => { this.#wait = 500; });
    socket.addEventListener("message", (message) => this.#receive(JSON.parse(message.data)));
    socket.addEventListener("close", (closed) => {
      if (this.#socket !== socket || !this.#running) return;
      if (closed.code === ACCESS_REVOKED) { signOut(); return; }
      setTimeout(() => this.#connect(), this.#wait);
      this.#wait = Math.min(this.#wait * 2, LONGEST_WAIT_MS);
    });
  }

  #receive(event) {
    const missedSome = event.type === "resync" || (event.type === "hello" && this.#stream !== null);
    this.#stream = event.stream ?? this.#stream;
    this.#seq = event.seq ?? this.#seq;
    if (missedSome) this.dispatchEvent(new CustomEvent("resync"));
    else if (event.type !== "hello") this.dispatchEvent(new CustomEvent(event.type, {detail: event}));
  }
}
