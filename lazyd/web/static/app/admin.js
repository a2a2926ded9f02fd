// Managing the accounts (admins only): who may log in, who may upload, who is an admin.

import {call, everything} from "./api.js";
import {h, localDate, notice, show} from "./dom.js";

export async function render(root, {me}) {
  document.title = "Users · lazyd";
  const message = h("div", {"aria-live": "polite"});
  const users = await everything("/users", "users", {sort: "username", order: "asc"});
  show(root, h("section", {class: "card", "aria-labelledby": "users-title"},
    h("h1", {id: "users-title"}, "Users"),
    h("p", {class: "hint"}, "A blocked user cannot log in and their open sessions end within seconds. "
      + "A user who may not upload can still read their transcripts."),
    message,
    h("table", {class: "users"},
      h("thead", {}, h("tr", {}, ["User", "Active", "May upload", "Role", "Since"].map(
        (name) => h("th", {scope: "col"}, name)))),
      h("tbody", {}, users.map((user) => row(user, me, message))))));
  return null;
}

function row(user, me, message) {
  const change = async (control, body, undo) => {
    control.disabled = true;
    try {
      await call("PATCH", `/users/${user.id}`, {json: body});
      show(message, notice(`${user.username}: saved.`));
    } catch (error) {
      undo();
      show(message, notice(`${user.username}: ${error.message}`, "error"));
    } finally {
      control.disabled = false;
    }
  };
  const toggle = (field, label) => {
    const box = h("input", {type: "checkbox", checked: user[field], "aria-label": `${label}: ${user.username}`});
    box.addEventListener("change", () => change(box, {[field]: box.checked}, () => { box.checked = !box.checked; }));
    return box;
  };
  const role = h("select", {"aria-label": `Role: ${user.username}`},
    ["user", "admin"].map((name) => h("option", {value: name, selected: user.role === name}, name)));
  let shown = user.role;
  role.addEventListener("change", () => change(role, {role: role.value}, () => { role.value = shown; })
    .then(() => { shown = role.value; }));
  const self = user.id === me.id ? h("span", {class: "hint"}, " (you)") : null;
  return h("tr", {"data-user": user.username}, h("th", {scope: "row"}, user.username, self),
    h("td", {}, toggle("active", "Active")), h("td", {}, toggle("can_interact", "May upload")),
    h("td", {}, role), h("td", {}, localDate(user.create_date)));
}
