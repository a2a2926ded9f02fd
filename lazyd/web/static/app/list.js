// The home view: upload a recording (drag and drop or the file picker, with an upload progress bar) and
// the user's transcriptions, their state and progress kept current by the live events.

import {everything, upload} from "./api.js";
import {duration, h, localDate, notice, show} from "./dom.js";
import {ACTIVE, ProgressBar, stateBadge} from "./progress.js";

export async function render(root, {live}) {
  document.title = "Transcriptions · lazyd";
  const rows = new Map();
  const table = h("tbody");
  const empty = h("p", {class: "hint"}, "Nothing yet: upload a recording above.");
  const listing = h("section", {"aria-labelledby": "list-title"},
    h("h2", {id: "list-title"}, "Your transcriptions"),
    h("table", {class: "jobs"},
      h("thead", {}, h("tr", {}, h("th", {scope: "col"}, "Recording"), h("th", {scope: "col"}, "State"),
        h("th", {scope: "col"}, "Length"), h("th", {scope: "col"}, "Uploaded"))),
      table),
    empty);

  const reload = async () => {
    const items = await everything("/transcriptions", "transcriptions");
    rows.clear();
    show(table, items.map((item) => row(item, rows)));
    empty.hidden = items.length > 0;
  };
  show(root, uploader(reload), listing);
  await reload();

  const listeners = {
    state: ({detail}) => (rows.has(detail.transcription_id) ? rows.get(detail.transcription_id).state(detail.state)
      : reload()),
    progress: ({detail}) => rows.get(detail.transcription_id)?.progress.update(detail),
    deleted: ({detail}) => {
      rows.get(detail.transcription_id)?.element.remove();
      rows.delete(detail.transcription_id);
    },
    resync: () => reload(),
  };
  for (const [type, listener] of Object.entries(listeners)) live.addEventListener(type, listener);
  return () => { for (const [type, listener] of Object.entries(listeners)) live.removeEventListener(type, listener); };
}

function row(item, rows) {
  const progress = new ProgressBar(item.audio_len_secs, item.done_secs);
  const stateCell = h("td");
  const state = (name) => {
    show(stateCell, stateBadge(name), ACTIVE.has(name) ? progress.element : null);
  };
  state(item.current_state);
  const name = item.filename || `Transcription ${item.id}`;
  const element = h("tr", {"data-id": item.id},
    h("td", {}, h("a", {href: `#/t/${item.id}`}, name),
      item.description ? h("p", {class: "hint clip"}, item.description) : null),
    stateCell, h("td", {}, duration(item.audio_len_secs)), h("td", {}, localDate(item.create_date)));
  rows.set(item.id, {element, state, progress});
  return element;
}

function uploader(reload) {
  const message = h("div", {"aria-live": "polite"});
  const picker = h("input", {type: "file", id: "recording", accept: "audio/*,video/*", hidden: true});
  const language = h("input", {id: "language", name: "language", placeholder: "detect", size: 6,
                               pattern: "[a-z]{2,3}", title: "An ISO 639-1 code such as en or de"});
  const prompt = h("input", {id: "initial_prompt", name: "initial_prompt",
                             placeholder: "names and terms the lecture uses"});
  const zone = h("label", {for: "recording", class: "drop", tabindex: 0},
    h("strong", {}, "Drop a recording here"), " or press to choose a file",
    h("span", {class: "hint"}, "Any audio or video file with sound"));

  const send = async (file) => {
    const bar = h("progress", {max: 1, value: 0, "aria-label": `Uploading ${file.name}`});
    show(message, h("p", {class: "notice"}, `Uploading ${file.name} `, bar));
    try {
      const answer = await upload(file, {language: language.value.trim(), initial_prompt: prompt.value.trim()},
                                  (fraction) => { bar.value = fraction; });
      await reload();
      show(message, notice(`${file.name} is queued.`), h("a", {href: `#/t/${answer.task_id}`}, "Open it"));
    } catch (error) {
      show(message, notice(`${file.name}: ${error.message}`, "error"));
    }
  };
  picker.addEventListener("change", () => {
    if (picker.files.length) send(picker.files[0]);
    picker.value = "";
  });
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); picker.click(); }
  });
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (event.dataTransfer.files.length) send(event.dataTransfer.files[0]);
  });
  return h("section", {class: "card", "aria-labelledby": "upload-title"},
    h("h1", {id: "upload-title"}, "Transcribe a recording"),
    zone, picker,
    h("details", {}, h("summary", {}, "Options"),
      h("div", {class: "options"},
        h("label", {for: "language"}, "Language"), language,
        h("label", {for: "initial_prompt"}, "Words to expect"), prompt)),
    message);
}
