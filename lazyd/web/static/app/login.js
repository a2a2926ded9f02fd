// Logging in, and creating an account where the daemon lets people register.

import {call, logIn, register} from "./api.js";
import {h, notice, show} from "./dom.js";

const PASSWORD_RULES = "8 to 256 characters with an upper- and a lower-case letter, a digit and one of "
  + "!@#$%^&*(),.?\":{}|<>=_";

export function render(root, {register: registering, done}) {
  document.title = registering ? "Create an account · lazyd" : "Log in · lazyd";
  const message = h("div", {"aria-live": "polite"});
  const username = h("input", {id: "username", name: "username", autocomplete: "username", required: true,
                               autocapitalize: "none", spellcheck: "false"});
  const password = h("input", {id: "password", name: "password", type: "password", required: true,
                               autocomplete: registering ? "new-password" : "current-password"});
  const submit = h("button", {type: "submit"}, registering ? "Create the account" : "Log in");
  const offer = h("p");
  const form = h("form", {class: "card narrow", onsubmit: async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      if (registering) await register(username.value, password.value);
      await logIn(username.value, password.value);
      done();
    } catch (error) {
      show(message, notice(error.message, "error"));
      submit.disabled = false;
    }
  }},
  h("h1", {}, registering ? "Create an account" : "Log in"),
  h("label", {for: "username"}, "User name"), username,
  registering ? h("p", {class: "hint"}, "5 to 64 Latin letters") : null,
  h("label", {for: "password"}, "Password"), password,
  registering ? h("p", {class: "hint"}, PASSWORD_RULES) : null,
  message, submit,
  registering ? h("p", {}, "Have an account? ", h("a", {href: "#/login"}, "Log in")) : offer);
  show(root, form);
  username.focus();
  if (!registering) showOfferIfOpen(offer);
  return null;
}

/** "Create an account", where the daemon lets people register. */
async function showOfferIfOpen(offer) {
  try {
    if ((await call("GET", "/auth/register", {anonymous: true})).open) {
      show(offer, "New here? ", h("a", {href: "#/register"}, "Create an account"));
    }
  } catch { /* then there is no offer */ }
}
