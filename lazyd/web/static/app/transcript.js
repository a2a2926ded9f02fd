// One transcription: the recording in a player beside its segments (the one playing is highlighted, a
// click on one plays from there), the text of a running job as it is recognised, corrections and labels,
// exports in every format, and cancel, retry and delete.

import {call, everything, freshToken, saveExport, url} from "./api.js";
import {clock, duration, h, notice, show} from "./dom.js";
import {ACTIVE, ProgressBar, RETRYABLE, stateBadge} from "./progress.js";

const DOUBTFUL_BELOW = 0.5;
const RELOAD_DELAY_MS = 300;

export async function render(root, {id, query, live}) {
  const view = new TranscriptView(root, id, live);
  await view.load(Number(query.get("at")) || null);
  return () => view.leave();
}

class TranscriptView {
  constructor(root, id, live) {
    this.root = root;
    this.id = id;
    this.live = live;
    this.pending = new Map();  // chunk number -> segments heard live, until that chunk is committed
    this.playing = null;
    this.listeners = {
      state: ({detail}) => this.#mine(detail) && this.#changed(detail.state),
      progress: ({detail}) => this.#mine(detail) && this.progress?.update(detail),
      segment: ({detail}) => this.#mine(detail) && this.#heard(detail),
      chunk: ({detail}) => this.#mine(detail) && this.#committed(detail.chunk_order),
      deleted: ({detail}) => this.#mine(detail) && (location.hash = "#/"),
      resync: () => this.#reloadSoon(),
    };
  }

  #mine(event) {
    return event.transcription_id === this.id;
  }

  async load(at) {
    let info, formats;
    try {
      [info, formats] = await Promise.all([call("GET", "/transcript/info", {query: {transcript_id: this.id}}),
                                           call("GET", "/formats")]);
    } catch (error) {
      show(this.root, notice(error.status === 404 ? "There is no such transcription." : error.message, "error"),
           h("a", {href: "#/"}, "Back to your transcriptions"));
      return;
    }
    this.info = info;
    document.title = `${info.filename || `Transcription ${info.id}`} · lazyd`;
    this.progress = new ProgressBar(info.audio_len_secs, info.done_secs);
    this.head = h("div", {class: "head"});
    this.actions = h("div", {class: "actions", role: "group", "aria-label": "Transcription"});
    this.message = h("div", {"aria-live": "polite"});
    this.list = h("ol", {class: "segments", "aria-label": "Segments"});
    this.audio = this.#player();
    this.follow = h("input", {type: "checkbox", id: "follow", checked: true});
    show(this.root,
      h("section", {class: "card", "aria-labelledby": "transcript-title"},
        h("h1", {id: "transcript-title"}, info.filename || `Transcription ${info.id}`),
        this.head, this.actions, this.#exports(formats.formats), this.message),
      h("section", {class: "reader", "aria-label": "Recording and text"},
        h("div", {class: "player"}, this.audio,
          h("label", {class: "inline"}, this.follow, " Follow the recording")),
        this.list));
    this.#showState(info.current_state);
    for (const [type, listener] of Object.entries(this.listeners)) this.live.addEventListener(type, listener);
    await this.#loadSegments();  // after listening: a chunk committed meanwhile is reloaded again
    if (at !== null) this.#seek(at, false);
  }

  leave() {
    for (const [type, listener] of Object.entries(this.listeners)) this.live.removeEventListener(type, listener);
    clearTimeout(this.reloadTimer);
    if (this.audio) {  // and no more range requests for the recording
      this.audio.pause();
      this.audio.removeAttribute("src");
      this.audio.load();
    }
  }

  // -- the job
  /** A new state: a resumed job decodes its unfinished chunks again, a stopped one never finishes them,
   *  so what was heard of them goes either way; a finished one has all its text committed. */
  #changed(state) {
    this.pending.clear();
    this.#showState(state);
    if (!ACTIVE.has(state)) {
      this.#reloadSoon();
      this.#act(async () => {  // its language is known now
        this.info = await call("GET", "/transcript/info", {query: {transcript_id: this.id}});
        this.#showState(this.info.current_state);
      });
    }
  }

  #showState(state) {
    const info = this.info;
    info.current_state = state;
    show(this.head, stateBadge(state), ` ${duration(info.audio_len_secs)}`,
      info.language ? ` · language ${info.language}` : "", ACTIVE.has(state) ? this.progress.element : null);
    const button = (text, action) => h("button", {type: "button", onclick: () => this.#act(action)}, text);
    show(this.actions,
      ACTIVE.has(state) ? button("Cancel", () => call("POST", "/transcript/cancel", {query: {transcript_id: this.id}}))
        : null,
      RETRYABLE.has(state) ? button("Retry", () => call("POST", "/transcript/retry", {query: {transcript_id: this.id}}))
        : null,
      this.#deleteButton());
  }

  /** Deleting asks once more on the same button, without a dialog. */
  #deleteButton() {
    const button = h("button", {type: "button", class: "danger"}, "Delete");
    button.addEventListener("click", () => {
      if (button.dataset.armed) {
        this.leave();  // the job's last events (cancelled, deleted) need no answer here
        this.#act(async () => {
          await call("DELETE", "/transcript", {query: {transcript_id: this.id}});
          location.hash = "#/";
        });
      } else {
        button.dataset.armed = "yes";
        button.textContent = "Really delete it and its recording?";
      }
    });
    return button;
  }

  async #act(action) {
    try {
      await action();
    } catch (error) {
      show(this.message, notice(error.message, "error"));
    }
  }

  #exports(formats) {
    const buttons = formats.map((format) => h("button", {
      type: "button", class: "quiet", title: format.description, "data-format": format.name,
      onclick: () => this.#act(() => saveExport(this.id, format.name)),
    }, format.name));
    return h("div", {class: "exports", role: "group", "aria-label": "Export"}, h("span", {}, "Export: "), buttons);
  }

  // -- the text
  async #loadSegments() {
    if (this.list.querySelector(".correction")) {  // never under a person's typing: after they are done
      this.reloadWhenEdited = true;
      return;
    }
    this.reloadWhenEdited = false;
    const segments = await everything("/transcript/segments", "segments", {transcript_id: this.id});
    this.playing = null;
    show(this.list, segments.map((segment) => this.#item(segment)));
    for (const segments of this.pending.values()) for (const segment of segments) this.#insert(segment);
    if (!segments.length && !ACTIVE.has(this.info.current_state)) {
      this.list.append(h("li", {class: "hint"}, "No speech was found in this recording."));
    }
    this.#highlight(this.audio.currentTime);
  }

  #reloadSoon() {
    clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => this.#act(() => this.#loadSegments()), RELOAD_DELAY_MS);
  }

  #committed(chunkOrder) {
    this.pending.delete(chunkOrder);
    this.#reloadSoon();
  }

  /** A segment of a chunk still being decoded: shown at once, in place, until its chunk is committed. */
  #heard(segment) {
    if (!this.pending.has(segment.chunk_order)) this.pending.set(segment.chunk_order, []);
    this.pending.get(segment.chunk_order).push(segment);
    this.#insert(segment);
  }

  #insert(segment) {
    const after = [...this.list.children].find((other) => Number(other.dataset.start) > segment.start);
    this.list.insertBefore(this.#item(segment, true), after ?? null);
  }

  #item(segment, provisional = false) {
    const doubtful = segment.confidence !== null && segment.confidence !== undefined
      && segment.confidence < DOUBTFUL_BELOW;
    const text = h("span", {class: "text"}, segment.text);
    const item = h("li", {
      class: ["segment", provisional && "provisional", doubtful && "doubtful", segment.edited && "edited"]
        .filter(Boolean).join(" "),
      "data-start": segment.start, "data-end": segment.end,
      title: doubtful ? `The recogniser was unsure here (${Math.round(segment.confidence * 100)}%)` : null,
    },
    h("button", {type: "button", class: "time", "aria-label": `Play from ${clock(segment.start)}`,
                 onclick: () => this.#seek(segment.start, true)}, clock(segment.start)),
    segment.label ? h("span", {class: "label"}, segment.label) : null,
    text,
    provisional ? null : h("button", {type: "button", class: "quiet edit", "aria-label": "Correct this segment",
                                      onclick: () => this.#edit(segment, item)}, "Edit"));
    text.addEventListener("click", () => this.#seek(segment.start, true));
    return item;
  }

  #edit(segment, item) {
    const text = h("textarea", {"aria-label": "Text", rows: 3, maxlength: 2000}, segment.text);
    const label = h("input", {"aria-label": "Label", placeholder: "label, e.g. Question from the audience",
                              maxlength: 200, value: segment.label || ""});
    const save = async (body) => {
      const path = `/transcript/segments/${segment.chunk_order}/${segment.segment_no}`;
      const changed = await call("PATCH", path, {query: {transcript_id: this.id}, json: body});
      Object.assign(segment, {text: changed.text, label: changed.label, edited: changed.edited});
      close();
    };
    const close = () => {
      item.replaceWith(this.#item(segment));
      if (this.reloadWhenEdited) this.#reloadSoon();
    };
    const form = h("form", {class: "correction", onsubmit: (event) => {
      event.preventDefault();
      this.#act(() => save({text: text.value, label: label.value}));
    }},
    text, label,
    h("div", {class: "actions"},
      h("button", {type: "submit"}, "Save"),
      h("button", {type: "button", class: "quiet", onclick: close}, "Cancel"),
      segment.edited ? h("button", {type: "button", class: "quiet",
                                    onclick: () => this.#act(() => save({restore: true}))}, "Restore the machine's text")
        : null));
    form.addEventListener("keydown", (event) => {
      if (event.key === "Escape") close();
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
    });
    item.replaceChildren(form);
    text.focus();
  }

  // -- the recording
  #player() {
    const audio = h("audio", {controls: true, preload: "metadata"});
    let retries = 0;
    const load = async () => {
      audio.src = url("/transcript/audio", {task_id: this.id, token: await freshToken()});
    };
    audio.addEventListener("timeupdate", () => this.#highlight(audio.currentTime));
    audio.addEventListener("playing", () => { retries = 0; });
    // The token in the address expires; the player then fails its next range request: give it a fresh one.
    audio.addEventListener("error", async () => {
      if (retries++ > 2) return;
      const at = audio.currentTime, wasPlaying = !audio.paused;
      await load();
      audio.currentTime = at;
      if (wasPlaying) audio.play().catch(() => {});
    });
    this.#act(load);
    return audio;
  }

  #seek(seconds, play) {
    this.audio.currentTime = seconds;
    this.#highlight(seconds, true);
    if (play) this.audio.play().catch(() => {});  // a browser may refuse to play before a user gesture
  }

  /** Mark the segment the recording is in, and keep it in view while "follow" is on. */
  #highlight(seconds, always = false) {
    const items = [...this.list.querySelectorAll(".segment")];
    const current = items.findLast((item) => Number(item.dataset.start) <= seconds + 0.05) ?? null;
    if (current === this.playing) return;
    this.playing?.classList.remove("playing");
    this.playing?.removeAttribute("aria-current");
    this.playing = current;
    if (!current) return;
    current.classList.add("playing");
    current.setAttribute("aria-current", "true");
    if (always || this.follow.checked) current.scrollIntoView({block: "nearest", behavior: "smooth"});
  }
}
