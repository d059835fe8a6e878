// Shared by every page: messages, calls to the JSON API, formatting, the top bar's buttons.
"use strict";

window.Exporter = (() => {
  const messages = JSON.parse(document.getElementById("messages").textContent);
  const language = document.body.dataset.language;

  function t(key, values = {}) {
    const text = messages[key];
    if (text === undefined) {
      return key;
    }
    return text.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? values[name] : whole));
  }

  // An API error: its body's error ({code, message, params, details}) and, as the message,
  // what describeError makes of it.
  class ApiError extends Error {
    constructor(status, error) {
      super(describeError(error).text);
      this.status = status;
      this.code = error.code;
      this.error = error;
    }
  }

  // A field's name as the reader knows it: its label on the form or in its type's strings
  // (labels: name -> label), else the name. A create body's fields ("params.created_from") are
  // the filters'.
  function fieldLabel(field, labels) {
    const name = field.replace(/^params\./, "");
    return labels[name] || name;
  }

  function readableParams(params, labels) {
    const values = {};
    for (const [name, value] of Object.entries(params || {})) {
      if (name.endsWith("_field")) {
        values[name] = fieldLabel(String(value), labels);
      } else if (Array.isArray(value)) {
        values[name] = value.join(t("list.separator"));
      } else {
        values[name] = typeof value === "number" ? formatNumber(value) : value;
      }
    }
    return values;
  }

  // An API error, or a failed task's ({code: error_code, params: error_params, message:
  // error}), in the page's language, from its stable code and params; the English message only
  // for a code this page does not know. A bad request says each field once, under its label:
  // `fields` maps each field name to its message, for a form to show by its input. A `scope`
  // ("import") has its own words for the codes whose export words would mislead.
  function describeError(error, labels = {}, scope = "") {
    const fields = new Map();
    if (["invalid_params", "invalid_request"].includes(error.code)) {
      for (const detail of error.details || []) {
        const name = detail.field.replace(/^params\./, "");
        if (!fields.has(name)) {
          const key = `error.field.${detail.code}`;
          const values = readableParams(detail.params, labels);
          values.label = fieldLabel(name, labels);
          fields.set(name, t(key in messages ? key : "error.field.invalid", values));
        }
      }
    }
    if (fields.size) {
      return { text: [...fields.values()].join(t("error.separator")), fields };
    }
    const scoped = `${scope}.error.${error.code}`;
    const key = scope && scoped in messages ? scoped : `error.${error.code}`;
    const text = key in messages ? t(key, readableParams(error.params, labels)) : error.message;
    return { text: text || t("error.unknown"), fields };
  }

  function signInAgain() {
    const here = window.location.pathname + window.location.search;
    window.location.assign(`/login?next=${encodeURIComponent(here)}`);
  }

  // Every call sends the session cookie; those that change something also send the CSRF value
  // the page was rendered with, which is what lets the API accept the cookie for them.
  function csrfToken() {
    const csrf = document.querySelector('meta[name="csrf-token"]');
    return csrf ? csrf.content : null;
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
    }
    const csrf = csrfToken();
    if (!["GET", "HEAD"].includes(method) && csrf) {
      headers["X-CSRF-Token"] = csrf;
    }
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "same-origin",
      });
    } catch (networkError) {
      throw new ApiError(0, { code: "network" });
    }
    if (response.status === 204) {
      return null;
    }
    const data = await response.json().catch(() => null);
    const code = data && data.error && data.error.code;
    // Signed out elsewhere, or the account disabled since: the page is as good as signed out.
    if ((response.status === 401 || code === "account_inactive") && csrf) {
      signInAgain();
    }
    if (!response.ok) {
      const error = data && data.error;
      const unexplained = { code: "http_error", params: { status: String(response.status) } };
      throw new ApiError(response.status, error || unexplained);
    }
    return data;
  }

  // Times read YYYY-MM-DD HH:mm:ss in every language; only the parts come from Intl, in the
  // browser's time zone.
  const dateTimeParts = new Intl.DateTimeFormat("en-US", {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
  });
  const number = new Intl.NumberFormat(language);

  function formatDateTime(iso) {
    if (!iso) {
      return "";
    }
    const part = Object.fromEntries(
      dateTimeParts.formatToParts(new Date(iso)).map(({ type, value }) => [type, value]));
    return `${part.year}-${part.month}-${part.day} ${part.hour}:${part.minute}:${part.second}`;
  }

  function formatNumber(value) {
    return value === null || value === undefined ? "" : number.format(value);
  }

  function formatBytes(size) {
    if (size === null || size === undefined) {
      return "";
    }
    const units = ["B", "KB", "MB", "GB", "TB"];
    let value = size;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    const digits = unit === 0 || value >= 100 ? 0 : 1;
    return `${value.toFixed(digits)} ${units[unit]}`;
  }

  // The browser's zone as a person names it: "中国标准时间（UTC+08:00）", not "Asia/Shanghai".
  function timeZone() {
    const now = new Date();
    const zonePart = (style) => new Intl.DateTimeFormat(language, { timeZoneName: style })
      .formatToParts(now).find((part) => part.type === "timeZoneName").value;
    const offset = zonePart("longOffset").replace("GMT", "UTC");
    return t("time_zone.name", {
      name: zonePart("long"), offset: offset === "UTC" ? "UTC+00:00" : offset,
    });
  }

  // An element with text only: user data never becomes markup.
  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) {
      node.textContent = String(text);
    }
    if (className) {
      node.className = className;
    }
    return node;
  }

  // A single row spanning the table: loading, empty and error states.
  function stateRow(tbody, columns, text, className, action) {
    const row = element("tr", undefined, `state ${className}`);
    const cell = element("td");
    cell.colSpan = columns;
    cell.append(element("span", text));
    if (action) {
      cell.append(" ", action);
    }
    row.append(cell);
    tbody.replaceChildren(row);
  }

  // Trying again helps only when the network or the server failed; a refused request (4xx)
  // would be refused again. The pager's count was for the list that is no longer shown.
  function failedRow(tbody, columns, problem, retry, pager = "page") {
    clearPager(pager);
    let button;
    if (problem.status === 0 || problem.status >= 500) {
      button = element("button", t("list.retry"));
      button.type = "button";
      button.addEventListener("click", retry);
    }
    stateRow(tbody, columns, t("list.failed", { message: problem.message }), "error", button);
  }

  // A table's pager: the elements `${pager}-info`, `${pager}-prev` and `${pager}-next`.
  function clearPager(pager = "page") {
    document.getElementById(`${pager}-info`).textContent = "";
    document.getElementById(`${pager}-prev`).disabled = true;
    document.getElementById(`${pager}-next`).disabled = true;
  }

  function showPage(page, pageSize, total, onMove, pager = "page") {
    const pages = Math.max(1, Math.ceil(total / pageSize));
    document.getElementById(`${pager}-info`).textContent = t("list.page_info", {
      page: formatNumber(page), pages: formatNumber(pages), total: formatNumber(total),
    });
    const previous = document.getElementById(`${pager}-prev`);
    const next = document.getElementById(`${pager}-next`);
    previous.disabled = page <= 1;
    next.disabled = page >= pages;
    previous.onclick = () => onMove(page - 1);
    next.onclick = () => onMove(page + 1);
  }

  let toastTimer;
  function toast(text) {
    const box = document.getElementById("toast");
    box.textContent = text;
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.hidden = true; }, 5000);
  }

  function setUpTopBar() {
    const switcher = document.getElementById("language-switch");
    switcher.addEventListener("click", () => {
      const cookie = document.body.dataset.languageCookie;
      document.cookie = `${cookie}=${switcher.dataset.language}; path=/; max-age=31536000; samesite=lax`;
      window.location.reload();
    });
    const signOut = document.getElementById("sign-out");
    if (signOut) {
      signOut.addEventListener("click", async () => {
        signOut.disabled = true;
        try {
          await api("DELETE", "/api/session");
        } finally {
          window.location.assign("/login");
        }
      });
    }
  }

  document.addEventListener("DOMContentLoaded", setUpTopBar);

  return {
    t, api, ApiError, describeError, csrfToken, signInAgain, language, formatDateTime,
    formatNumber, formatBytes, timeZone, element, stateRow, failedRow, clearPager, showPage, toast,
  };
})();
