// The state of a transcription as people read it, and its progress bar with the time left: shared by the
// list and the transcript view, both fed by the same live "state" and "progress" events.

import {duration, h} from "./dom.js";

export const STATE_NAMES = {
  queued: "Queued", in_progress: "Transcribing", processing_error: "Failed, will retry", completed: "Done",
  completed_partially: "Partly done", processing_fail: "Failed", cancelled: "Cancelled",
};
export const ACTIVE = new Set(["queued", "in_progress", "processing_error"]);
export const RETRYABLE = new Set(["processing_fail", "completed_partially", "cancelled"]);

export function stateBadge(state) {
  return h("span", {class: `state ${state}`}, STATE_NAMES[state] ?? state);
}

/** A <progress> with its caption ("40% · about 2 min left"); update() takes a live "progress" event. */
export class ProgressBar {
  constructor(total, done = 0) {
    this.total = total;
    this.bar = h("progress", {max: 1, value: 0, "aria-label": "Transcribed"});
    this.caption = h("span", {class: "caption"});
    this.element = h("div", {class: "progress"}, this.bar, this.caption);
    this.update({done_secs: done, eta_secs: null});
  }

  update({done_secs: done, total_secs: total, eta_secs: eta}) {
    this.total = total ?? this.total;
    const fraction = this.total ? Math.min(1, done / this.total) : 0;
    this.bar.value = fraction;
    const left = eta === null || eta === undefined ? "" : ` · about ${duration(eta)} left`;
    this.caption.textContent = `${Math.floor(fraction * 100)}%${left}`;
  }
}
