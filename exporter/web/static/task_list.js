// One kind's tasks on the tasks page: a paged table, newest first, kept live, with the actions
// on a task (cancel, retry, delete, download its file). What a row shows is the kind's own.
"use strict";

window.Exporter.taskList = (() => {
  const X = window.Exporter;
  const PAGE_SIZE = 20;

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

  function statusBadge(task) {
    if (task.status === "running" && task.cancel_requested) {
      return X.element("span", X.t("tasks.cancelling"), "badge status-cancelled");
    }
    return X.element("span", X.t(`task_status.${task.status}`), `badge status-${task.status}`);
  }

  // What the bar and its line say: counting, rows done, the work being finished once every row
  // is done, no rows at all, or how far a failed or cancelled task got. The words of the first
  // three are the kind's own (under `prefix`).
  function progressText(task, prefix) {
    const done = X.formatNumber(task.rows_done);
    const total = X.formatNumber(task.rows_total);
    if (task.status === "running" && task.rows_done >= task.rows_total) {
      const key = task.rows_total === 0 ? "finishing_no_rows" : "finishing";
      return X.t(`${prefix}.${key}`, { total });
    }
    if (task.rows_total === 0) {
      return X.t(`${prefix}.no_rows`);
    }
    // A task that stopped only after every row (an import refused for its rejected rows) did
    // not stop part way.
    if (["running", "completed"].includes(task.status) || task.rows_done >= task.rows_total) {
      return X.t("tasks.progress", { done, total });
    }
    return X.t("tasks.stopped_at", { done, total });
  }

  function progressCell(task, prefix) {
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
      cell.append(bar, X.element("span", X.t(`${prefix}.counting`), "muted"));
      return cell;
    }
    // While the file is finished there is nothing to measure: the bar keeps moving.
    if (!(task.status === "running" && task.rows_done >= task.rows_total)) {
      bar.max = Math.max(task.rows_total, 1);
      bar.value = task.rows_done;
    }
    cell.classList.toggle("stopped", stopped);
    cell.append(bar, X.element("span", progressText(task, prefix), "progress-text"));
    return cell;
  }

  // A task's Cancel, Retry or Delete button; `onClick(button)` does it.
  function taskActionButton(action, onClick) {
    const button = X.element("button", X.t(`tasks.${action}`), `action-${action}`);
    button.type = "button";
    button.dataset.action = action;
    button.addEventListener("click", () => onClick(button));
    return button;
  }

  // How a page names a task's type (`titles`: type -> title, for types without strings) and
  // each of its filters (`paramsOfType`: type -> [{name, label: message key}]).
  function typeWords(titles, paramsOfType) {
    function typeTitle(type) {
      const key = `type.${type}.name`;
      const text = X.t(key);
      return text === key ? titles[type] || type : text;
    }

    function paramLabels(type) {
      const labels = {};
      for (const param of paramsOfType[type] || []) {
        if (param.label) {
          labels[param.name] = X.t(param.label);
        }
      }
      return labels;
    }

    return { typeTitle, paramLabels };
  }

  // kind: {
  //   table, pager: the table's pager prefix, path: the kind's API path,
  //   prefix: the kind's message keys (`${prefix}.download`, `.confirm_delete`, `.cancelled`,
  //     `.retried`, `.deleted`, `.download_gone`, `.download_not_ready`, `.download_not_found`,
  //     and its errors' words, `${prefix}.error.<code>`, where they differ),
  //   cells(task): each column's content by field (actions are added here),
  //   fileUrl(task): the link to the task's file, if it has one now,
  //   mayRetry(task), labels(task): field labels for messages,
  //   empty(): [text, link or undefined], prepare(tasks): awaited before a page is drawn,
  //   loaded(data): told of each page drawn,
  // }
  function create(kind) {
    const tbody = kind.table.tBodies[0];
    const columns = [...kind.table.tHead.rows[0].cells].map((th) => ({
      field: th.dataset.field, label: th.textContent,
    }));
    const rows = new Map();
    let page = 1;
    let loading = false;
    let loadAgain = false;

    function message(problem, task) {
      return X.describeError(problem.error || {}, kind.labels(task), kind.prefix).text;
    }

    function actionButton(task, action) {
      return taskActionButton(action, (button) => act(task, action, button));
    }

    function actionsCell(task) {
      const cell = X.element("div", undefined, "actions");
      const url = kind.fileUrl(task);
      if (url) {
        const link = X.element("a", X.t(`${kind.prefix}.download`), "button primary action-download");
        link.href = url;
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
        if (["failed", "cancelled", "expired"].includes(task.status) && kind.mayRetry(task)) {
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
      const contents = { ...kind.cells(task), actions: actionsCell(task) };
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

    async function fetchPage() {
      const data = await X.api("GET", `${kind.path}?page=${page}&page_size=${PAGE_SIZE}`);
      await kind.prepare(data.items);
      rows.clear();
      if (!data.items.length) {
        const [text, link] = kind.empty();
        X.stateRow(tbody, columns.length, text, "empty", link);
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
      }, kind.pager);
      kind.loaded(data);
    }

    // One load at a time; a change announced meanwhile asks for one more, so a list read before
    // the change never has the last word.
    async function load() {
      if (loading) {
        loadAgain = true;
        return;
      }
      loading = true;
      kind.table.setAttribute("aria-busy", "true");
      try {
        do {
          loadAgain = false;
          await fetchPage();
        } while (loadAgain);
      } catch (problem) {
        X.failedRow(tbody, columns.length, problem, load, kind.pager);
      } finally {
        loading = false;
        kind.table.removeAttribute("aria-busy");
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

    function onDeleted(id) {
      if (rows.has(id)) {
        load();
      }
    }

    async function act(task, action, button) {
      if (action === "delete" && !window.confirm(X.t(`${kind.prefix}.confirm_delete`))) {
        return;
      }
      button.disabled = true;
      const path = `${kind.path}/${task.id}`;
      try {
        if (action === "cancel") {
          const cancelled = await X.api("POST", `${path}/cancel`);
          if (rows.has(cancelled.id)) {
            replaceRow(cancelled);
          }
          X.toast(X.t(`${kind.prefix}.cancelled`));
        } else if (action === "retry") {
          await X.api("POST", `${path}/retry`);
          X.toast(X.t(`${kind.prefix}.retried`));
          load();
        } else {
          await X.api("DELETE", path);
          X.toast(X.t(`${kind.prefix}.deleted`));
          load();
        }
      } catch (problem) {
        button.disabled = false;
        X.toast(X.t("tasks.action_failed", { message: message(problem, task) }));
      }
    }

    // The file is checked (HEAD) before the browser is sent to it, so a file that is gone leaves
    // the user on this page with a message, not on the API's JSON error. The file itself then
    // goes straight from the server to disk, never through this script's memory, and keeps the
    // name the server gives it.
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
        X.toast(X.t(`${kind.prefix}.download_gone`));
      } else if (problem.status === 409) {
        X.toast(X.t(`${kind.prefix}.download_not_ready`));
      } else if (problem.status === 404) {
        X.toast(X.t(`${kind.prefix}.download_not_found`));
        load();
        return;
      } else {
        X.toast(X.t("tasks.action_failed", { message: problem.message }));
        return;
      }
      // The task as it is now: a lost file made it expired (the server marks it), or it changed.
      try {
        const current = await X.api("GET", `${kind.path}/${task.id}`);
        if (rows.has(current.id)) {
          replaceRow(current);
        }
      } catch (refresh) {
        if (rows.has(task.id)) {
          replaceRow(task);
        }
      }
    }

    X.stateRow(tbody, columns.length, X.t("list.loading"), "loading");
    return { load, onTask, onDeleted };
  }

  return { create, timeCell, statusBadge, progressCell, taskActionButton, typeWords };
})();
