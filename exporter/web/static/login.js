// The sign-in form: POST /api/session sets the session cookie, then on to the page asked for.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const { t, api } = window.Exporter;
  const form = document.getElementById("login-form");
  const error = document.getElementById("login-error");
  const submit = form.querySelector('button[type="submit"]');
  const submitText = submit.textContent;

  function fail(text, field) {
    error.textContent = text;
    error.hidden = false;
    form.elements[field].setAttribute("aria-invalid", "true");
    form.elements[field].focus();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    for (const input of [form.elements.username, form.elements.password]) {
      input.removeAttribute("aria-invalid");
      if (!input.value) {
        fail(t("login.failed"), input.name);
        return;
      }
    }
    submit.disabled = true;
    submit.textContent = submit.dataset.busyText;
    try {
      await api("POST", "/api/session", {
        username: form.elements.username.value,
        password: form.elements.password.value,
      });
      window.location.assign(form.dataset.next);
    } catch (problem) {
      submit.disabled = false;
      submit.textContent = submitText;
      if (problem.status === 401) {
        form.elements.password.value = "";
        fail(t("login.failed"), "password");
      } else if (problem.status === 403) {
        fail(t("login.forbidden"), "username");
      } else if (problem.status === 429) {
        fail(t("login.throttled"), "password");
      } else {
        fail(problem.message, "username");
      }
    }
  });
});
