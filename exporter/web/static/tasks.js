// The export tasks page: the user's tasks, kept current by the server's event stream, with
// polling while the stream is down, and the download / cancel / retry / delete buttons.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const X = window.Exporter;
  const PAGE_SIZE = 20;
  const POLL_INTERVAL_S = 3;
  const titles = JSON.parse(document.getElementById("type-titles").textContent);
  // What the account's role allows: retry only what it may still export, names of roles only
  // if it may read them.
  const access = JSON.parse(document.getElementById("access").textContent);
  const table = document.getElementById("tasks-table");
  const tbody = table.tBodies[0];
  const columns = [...table.tHead.rows[0].cells].map((th) => ({
    field: th.dataset.field, label: th.textContent,
  }));
  const liveState = document.getElementById("live-state");
  const rows = new Map();
  let page = 1;
  let roleNames = null;
  let loading = false;
  let loadAgain = false;
  let pollTimer = null;

  document.getElementById("time-zone").textContent = X.t("tasks.time_zone", { zone: X.timeZone() });

  function typeTitle(type) {
    const key = `type.${type}`;
    const text = X.t(key);
    return text === key ? titles[type] || type : text;
  }

  function describeParams(task) {
    const parts = Object.entries(task.params).map(([name, value]) => {
      let shown = value;
      if (task.type === "account" && name === "status") {
        shown = X.t(`account_status.${value}`);
      } else if (name === "role_id" && roleNames) {
        shown = roleNames.get(value) || `#${value}`;
      }
      const key = `param.${name}`;
      const label = X.t(key);
      return X.t("filters.pair", { label: label === key ? name : label, value: shown });
    });
    return parts.length ? parts.join(X.t("filters.separator")) : X.t("export.all_rows");
  }

  // Why the task failed, in the page's language (the English error of a task failed before
  // failures had codes).
  function failureText(task) {
    if (!task.error) {
      return "";
    }
    const failure = { code: task.error_code, params: task.error_params, message: task.error };
    return X.describeError(failure).text;
  }

  function progressCell(task) {
    const cell = X.element("div", undefined, "progress");
    if (task.status === "pending") {
      cell.append(X.element("span", X.t("tasks.queued"), "muted"));
      return cell;
    }
    if (!["running", "completed"].includes(task.status)) {
      return cell;
    }
    const bar = document.createElement("progress");
    bar.setAttribute("aria-label", X.t("tasks.col.progress"));
    if (task.rows_total === null) {
      cell.append(bar, X.element("span", X.t("tasks.counting"), "muted"));
      return cell;
    }
    bar.max = Math.max(task.rows_total, 1);
    bar.value = task.rows_total === 0 ? 1 : task.rows_done;
    const text = X.t("tasks.progress", {
      done: X.formatNumber(task.rows_done), total: X.formatNumber(task.rows_total),
    });
    cell.append(bar, X.element("span", text, "progress-text"));
    return cell;
  }

  function actionButton(task, action) {
    const button = X.element("button", X.t(`tasks.${action}`), `action-${action}`);
    button.type = "button";
    button.dataset.action = action;
    button.addEventListener("click", () => act(task, action, button));
    return button;
  }

  function actionsCell(task) {
    const cell = X.element("div", undefined, "actions");
    if (task.status === "completed" && task.download_url) {
      const link = X.element("a", X.t("tasks.download"), "button primary action-download");
      link.href = task.download_url;
      link.dataset.action = "download";
      cell.append(link);
    }
    if (["pending", "running"].includes(task.status)) {
      if (!task.cancel_requested) {
        cell.append(actionButton(task, "cancel"));
      }
    } else {
      if (["failed", "cancelled"].includes(task.status)
          && access.exportable_types.includes(task.type)) {
        cell.append(actionButton(task, "retry"));
      }
      cell.append(actionButton(task, "delete"));
    }
    return cell;
  }

  function renderRow(task) {
    const row = X.element("tr");
    row.dataset.taskId = task.id;
    row.dataset.status = task.status;
    const cancelling = task.status === "running" && task.cancel_requested;
    const status = cancelling
      ? X.element("span", X.t("tasks.cancelling"), "badge status-cancelled")
      : X.element("span", X.t(`task_status.${task.status}`), `badge status-${task.status}`);
    const contents = {
      type: typeTitle(task.type),
      format: task.format,
      filters: describeParams(task),
      status,
      progress: progressCell(task),
      created: X.formatDateTime(task.created_at),
      finished: X.formatDateTime(task.finished_at),
      size: X.formatBytes(task.file_size),
      rows: X.formatNumber(task.row_count),
      error: failureText(task),
      actions: actionsCell(task),
    };
    for (const column of columns) {
      const cell = X.element("td", undefined, `col-${column.field}`);
      cell.dataset.label = column.label;
      if (contents[column.field] !== "") {
        cell.append(contents[column.field]);
      }
      row.append(cell);
    }
    return row;
  }

  // A row redrawn under the keyboard keeps the focus on the same button.
  function replaceRow(task) {
    const old = rows.get(task.id);
    const focused = old.contains(document.activeElement) && document.activeElement.dataset.action;
    const row = renderRow(task);
    old.replaceWith(row);
    rows.set(task.id, row);
    const again = focused && row.querySelector(`[data-action="${focused}"]`);
    if (again) {
      again.focus();
    }
  }

  async function loadRoleNames(tasks) {
    if (roleNames || !tasks.some((task) => "role_id" in task.params)) {
      return;
    }
    if (!access.readable_types.includes("role")) {
      roleNames = new Map();
      return;
    }
    try {
      const data = await X.api("GET", "/api/roles?page_size=100");
      roleNames = new Map(data.items.map((role) => [role.id, role.name]));
    } catch (problem) {
      roleNames = new Map();
    }
  }

  async function fetchPage() {
    const data = await X.api("GET", `/api/export-tasks?page=${page}&page_size=${PAGE_SIZE}`);
    await loadRoleNames(data.items);
    rows.clear();
    if (!data.items.length && access.export_page) {
      const link = X.element("a", X.t(`nav.${access.export_page}`));
      link.href = `/${access.export_page}`;
      X.stateRow(tbody, columns.length, X.t("tasks.empty"), "empty", link);
    } else if (!data.items.length) {
      X.stateRow(tbody, columns.length, X.t("tasks.empty_no_export"), "empty");
    } else {
      tbody.replaceChildren(...data.items.map((task) => {
        const row = renderRow(task);
        rows.set(task.id, row);
        return row;
      }));
    }
    X.showPage(data.page, data.page_size, data.total, (to) => {
      page = to;
      load();
    });
  }

  // One load at a time; a change announced meanwhile asks for one more, so a list read before
  // the change never has the last word.
  async function load() {
    if (loading) {
      loadAgain = true;
      return;
    }
    loading = true;
    table.setAttribute("aria-busy", "true");
    try {
      do {
        loadAgain = false;
        await fetchPage();
      } while (loadAgain);
    } catch (problem) {
      X.failedRow(tbody, columns.length, problem, load);
    } finally {
      loading = false;
      table.removeAttribute("aria-busy");
    }
  }

  function onTask(task) {
    if (loading) {
      loadAgain = true;
    }
    if (rows.has(task.id)) {
      replaceRow(task);
    } else if (page === 1) {
      load();  // a new task: the list is newest first, so it belongs on the first page
    }
  }

  async function act(task, action, button) {
    if (action === "delete" && !window.confirm(X.t("tasks.confirm_delete"))) {
      return;
    }
    button.disabled = true;
    const path = `/api/export-tasks/${task.id}`;
    try {
      if (action === "cancel") {
        const cancelled = await X.api("POST", `${path}/cancel`);
        if (rows.has(cancelled.id)) {
          replaceRow(cancelled);
        }
        X.toast(X.t("tasks.cancelled"));
      } else if (action === "retry") {
        await X.api("POST", `${path}/retry`);
        X.toast(X.t("tasks.retried"));
        load();
      } else {
        await X.api("DELETE", path);
        X.toast(X.t("tasks.deleted"));
        load();
      }
    } catch (problem) {
      button.disabled = false;
      X.toast(X.t("tasks.action_failed", { message: problem.message }));
    }
  }

  function startPolling() {
    if (pollTimer === null) {
      liveState.textContent = X.t("tasks.polling", { seconds: POLL_INTERVAL_S });
      liveState.className = "live-state polling";
      load();
      pollTimer = setInterval(load, POLL_INTERVAL_S * 1000);
    }
  }

  function stopPolling() {
    clearInterval(pollTimer);
    pollTimer = null;
    liveState.textContent = X.t("tasks.live");
    liveState.className = "live-state live";
  }

  X.stateRow(tbody, columns.length, X.t("list.loading"), "loading");
  if (!window.EventSource) {
    startPolling();
    return;
  }
  // The browser reconnects by itself; each (re)connection begins with "ready" and a fresh list.
  const stream = new EventSource("/api/export-tasks/stream");
  stream.addEventListener("ready", () => {
    stopPolling();
    load();
  });
  stream.addEventListener("task", (event) => onTask(JSON.parse(event.data)));
  stream.addEventListener("deleted", (event) => {
    if (rows.has(JSON.parse(event.data).id)) {
      load();
    }
  });
  stream.addEventListener("error", startPolling);
});
