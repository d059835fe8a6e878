// The export tasks page: the user's tasks, kept current by the server's event stream, with
// polling while the stream is down, and the download / cancel / retry / delete buttons.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const X = window.Exporter;
  const PAGE_SIZE = 20;
  const POLL_INTERVAL_S = 3;
  const titles = JSON.parse(document.getElementById("type-titles").textContent);
  // What the account's role allows: retry only what it may still export, the names a filter's
  // values have in another list only if it may read that list.
  const access = JSON.parse(document.getElementById("access").textContent);
  // Each type's filters in its form's order: [{name, label: message key, kind, options: {value:
  // message key}, items: the list naming its values ({type_name, source, value, label})}].
  const paramsOfType = JSON.parse(document.getElementById("type-params").textContent);
  const table = document.getElementById("tasks-table");
  const tbody = table.tBodies[0];
  const columns = [...table.tHead.rows[0].cells].map((th) => ({
    field: th.dataset.field, label: th.textContent,
  }));
  const liveState = document.getElementById("live-state");
  const rows = new Map();
  let page = 1;
  // The names of the values a filter takes from another list, by that list's source.
  const itemNames = new Map();
  let loading = false;
  let loadAgain = false;
  let pollTimer = null;

  document.getElementById("tasks-intro").textContent = X.t("tasks.intro", { zone: X.timeZone() });

  function typeTitle(type) {
    const key = `type.${type}.name`;
    const text = X.t(key);
    return text === key ? titles[type] || type : text;
  }

  // A date stays a date; an instant with its offset is shown in the page's zone; one without
  // an offset is in the export's zone and is shown as written.
  function formatParamTime(value) {
    const text = String(value);
    if (/T.*(Z|[+-]\d\d:?\d\d)$/.test(text)) {
      return X.formatDateTime(text);
    }
    return text.replace("T", " ");
  }

  // Each filter of a type by name, as its form labels it, for messages about them.
  function paramLabels(type) {
    const labels = {};
    for (const param of paramsOfType[type] || []) {
      if (param.label) {
        labels[param.name] = X.t(param.label);
      }
    }
    return labels;
  }

  function paramValue(param, value) {
    const names = param.items && itemNames.get(param.items.source);
    if (names) {
      return names.get(value) || `#${value}`;
    }
    if (param.kind === "time") {
      return formatParamTime(value);
    }
    return param.options[value] ? X.t(param.options[value]) : value;
  }

  // The filters in the order of the type's form (jsonb keeps keys in its own order), formatted.
  function describeParams(task) {
    const known = paramsOfType[task.type] || [];
    const names = new Set(known.map((param) => param.name));
    const params = [
      ...known.filter((param) => param.name in task.params),
      ...Object.keys(task.params).filter((name) => !names.has(name))
        .map((name) => ({ name, label: null, kind: "text", options: {}, items: null })),
    ];
    if (!params.length) {
      return X.t("export.all_rows");
    }
    const cell = X.element("span");
    params.forEach((param, index) => {
      const value = X.element("span", paramValue(param, task.params[param.name]));
      if (param.kind === "time") {
        value.className = "nowrap";
      }
      // A pair wraps as a whole (a line never ends inside "状态：正常"); its separator stays on
      // its line.
      const pair = X.element("span", undefined, "filter-pair");
      const [before, after] = X.t("filters.pair", {
        label: param.label ? X.t(param.label) : param.name, value: "\u0000",
      }).split("\u0000");
      pair.append(before, value, after);
      if (index < params.length - 1) {
        pair.append(X.t("filters.separator"));
      }
      cell.append(pair);
    });
    return cell;
  }

  // What the bar and its line say: counting, rows written, the file being finished once every
  // row is written, no rows at all, or how far a failed or cancelled export got.
  function progressText(task) {
    const done = X.formatNumber(task.rows_done);
    const total = X.formatNumber(task.rows_total);
    if (task.status === "running" && task.rows_done >= task.rows_total) {
      return X.t(task.rows_total === 0 ? "tasks.finishing_no_rows" : "tasks.finishing", { total });
    }
    if (task.rows_total === 0) {
      return X.t("tasks.no_rows");
    }
    if (task.status === "running" || task.status === "completed") {
      return X.t("tasks.progress", { done, total });
    }
    return X.t("tasks.stopped_at", { done, total });
  }

  // Why the task failed, in the page's language (the English error of a task failed before
  // failures had codes).
  function failureText(task) {
    if (!task.error) {
      return "";
    }
    const failure = { code: task.error_code, params: task.error_params, message: task.error };
    return X.describeError(failure, paramLabels(task.type)).text;
  }

  function progressCell(task) {
    const cell = X.element("div", undefined, "progress");
    if (task.status === "pending") {
      cell.append(X.element("span", X.t("tasks.queued"), "muted"));
      return cell;
    }
    const counted = task.rows_total !== null;
    const stopped = ["failed", "cancelled"].includes(task.status);
    if (task.status !== "running" && !(counted && (task.status === "completed" || stopped))) {
      return "";  // nothing was counted: a phone's card leaves the line out
    }
    const bar = document.createElement("progress");
    bar.setAttribute("aria-label", X.t("tasks.col.progress"));
    if (!counted) {
      cell.append(bar, X.element("span", X.t("tasks.counting"), "muted"));
      return cell;
    }
    // While the file is finished there is nothing to measure: the bar keeps moving.
    if (!(task.status === "running" && task.rows_done >= task.rows_total)) {
      bar.max = Math.max(task.rows_total, 1);
      bar.value = task.rows_done;
    }
    cell.classList.toggle("stopped", stopped);
    cell.append(bar, X.element("span", progressText(task), "progress-text"));
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
      link.addEventListener("click", (event) => {
        event.preventDefault();
        download(task, link);
      });
      cell.append(link);
    }
    if (["pending", "running"].includes(task.status)) {
      if (!task.cancel_requested) {
        cell.append(actionButton(task, "cancel"));
      }
    } else {
      if (["failed", "cancelled", "expired"].includes(task.status)
          && access.exportable_types.includes(task.type)) {
        cell.append(actionButton(task, "retry"));
      }
      cell.append(actionButton(task, "delete"));
    }
    return cell;
  }

  // When the table is pressed for room the time goes under the date, never mid-date.
  function timeCell(iso) {
    const text = X.formatDateTime(iso);
    if (!text) {
      return "";
    }
    const [day, time] = text.split(" ");
    const cell = X.element("span");
    cell.append(X.element("span", day, "nowrap"), " ", X.element("span", time, "nowrap"));
    return cell;
  }

  function renderRow(task) {
    const row = X.element("tr");
    row.dataset.taskId = task.id;
    row.dataset.status = task.status;
    const cancelling = task.status === "running" && task.cancel_requested;
    let status = X.element("span", X.t(`task_status.${task.status}`), `badge status-${task.status}`);
    if (cancelling) {
      status = X.element("span", X.t("tasks.cancelling"), "badge status-cancelled");
    }
    const contents = {
      type: typeTitle(task.type),
      format: task.format,
      filters: describeParams(task),
      status,
      progress: progressCell(task),
      created: timeCell(task.created_at),
      finished: timeCell(task.finished_at),
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

  // Once per list: the names of the values the tasks' filters take from it.
  async function loadItemNames(tasks) {
    const lists = new Map();
    for (const task of tasks) {
      for (const param of paramsOfType[task.type] || []) {
        if (param.items && param.name in task.params && !itemNames.has(param.items.source)) {
          lists.set(param.items.source, param.items);
        }
      }
    }
    await Promise.all([...lists.values()].map(async (items) => {
      let names = new Map();
      if (access.readable_types.includes(items.type_name)) {
        try {
          const data = await X.api("GET", items.source);
          names = new Map(data.items.map((item) => [item[items.value], item[items.label]]));
        } catch (problem) {
          // The values show as #id.
        }
      }
      itemNames.set(items.source, names);
    }));
  }

  async function fetchPage() {
    const data = await X.api("GET", `/api/export-tasks?page=${page}&page_size=${PAGE_SIZE}`);
    await loadItemNames(data.items);
    rows.clear();
    if (!data.items.length && access.export_page) {
      const link = X.element("a", X.t(access.export_page.label));
      link.href = access.export_page.path;
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
      const message = X.describeError(problem.error, paramLabels(task.type)).text;
      X.toast(X.t("tasks.action_failed", { message }));
    }
  }

  // The file is checked (HEAD) before the browser is sent to it, so a file that is gone leaves
  // the user on this page with a message, not on the API's JSON error. The file itself then goes
  // straight from the server to disk, never through this script's memory, and keeps the name
  // the server gives it.
  async function download(task, link) {
    try {
      await X.api("HEAD", link.href);
    } catch (problem) {
      downloadFailed(task, problem);
      return;
    }
    window.location.assign(link.href);
  }

  async function downloadFailed(task, problem) {
    if (problem.status === 410) {
      X.toast(X.t("tasks.download_gone"));
    } else if (problem.status === 409) {
      X.toast(X.t("tasks.download_not_ready"));
    } else if (problem.status === 404) {
      X.toast(X.t("tasks.download_not_found"));
      load();
      return;
    } else {
      X.toast(X.t("tasks.action_failed", { message: problem.message }));
      return;
    }
    // The task as it is now: a lost file made it expired (the server marks it), or it changed.
    try {
      const current = await X.api("GET", `/api/export-tasks/${task.id}`);
      if (rows.has(current.id)) {
        replaceRow(current);
      }
    } catch (refresh) {
      if (rows.has(task.id)) {
        replaceRow(task);
      }
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
