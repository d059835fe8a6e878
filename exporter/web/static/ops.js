// The operators' page: workers, the queue and every account's tasks, from one summary the page
// asks for again every few seconds (the task stream is per account; this view is of everyone's
// tasks and of workers, which no task event describes). Cancel and retry for ops:write.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const X = window.Exporter;
  const REFRESH_S = 3;
  const STATUSES = ["pending", "running", "completed", "failed", "cancelled", "expired"];
  const titles = JSON.parse(document.getElementById("type-titles").textContent);
  const paramsOfType = JSON.parse(document.getElementById("type-params").textContent);
  const intro = document.getElementById("ops-intro");
  const mayWrite = intro.dataset.mayWrite === "true";
  const liveState = document.getElementById("live-state");
  let timer = null;

  intro.textContent = X.t("ops.intro", { seconds: REFRESH_S, zone: X.timeZone() });

  const { typeTitle, paramLabels } = X.taskList.typeWords(titles, paramsOfType);

  // As the tasks page words it: from the stable code, the kind's own words for an import.
  function failureText(task) {
    const failure = { code: task.error_code, params: task.error_params, message: task.error };
    const scope = task.kind === "import" ? "imports" : "";
    return X.describeError(failure, paramLabels(task.type), scope).text;
  }

  function shortId(id) {
    return id.slice(0, 8);
  }

  function rows(tableId, items, emptyKey, cells) {
    const table = document.getElementById(tableId);
    const tbody = table.tBodies[0];
    const fields = [...table.tHead.rows[0].cells].map((th) => [th.dataset.field, th.textContent]);
    if (!items.length) {
      X.stateRow(tbody, fields.length, X.t(emptyKey), "empty");
      return;
    }
    tbody.replaceChildren(...items.map((item) => {
      const row = X.element("tr");
      const contents = cells(item, row);
      for (const [field, label] of fields) {
        const cell = X.element("td", undefined, `col-${field}`);
        cell.dataset.label = label;
        const content = contents[field];
        if (content !== "" && content !== undefined && content !== null) {
          cell.append(content);
        }
        row.append(cell);
      }
      return row;
    }));
  }

  function badge(text, status) {
    return X.element("span", text, `badge status-${status}`);
  }

  function taskCell(task) {
    const cell = X.element("span");
    cell.append(
      X.element("span", `${X.t(`ops.kind.${task.kind}`)} · ${typeTitle(task.type)}`),
      " ",
      X.element("code", shortId(task.id), "muted"),
    );
    cell.title = task.id;
    return cell;
  }

  function rowsText(task) {
    if (task.rows_total === null) {
      return X.formatNumber(task.rows_done);
    }
    return X.t("tasks.progress", {
      done: X.formatNumber(task.rows_done), total: X.formatNumber(task.rows_total),
    });
  }

  function actionButton(task, action) {
    return X.taskList.taskActionButton(action, (button) => act(task, action, button));
  }

  function actionsCell(task) {
    if (!mayWrite) {
      return "";
    }
    const cell = X.element("div", undefined, "actions");
    if (["pending", "running"].includes(task.status) && !task.cancel_requested) {
      cell.append(actionButton(task, "cancel"));
    }
    if (["failed", "cancelled", "expired"].includes(task.status)) {
      cell.append(actionButton(task, "retry"));
    }
    return cell;
  }

  async function act(task, action, button) {
    button.disabled = true;
    try {
      await X.api("POST", `/api/ops/tasks/${task.id}/${action}`);
      X.toast(X.t(action === "cancel" ? "ops.cancelled" : "ops.retried", { owner: task.owner }));
      refresh();
    } catch (problem) {
      button.disabled = false;
      const text = X.describeError(problem.error || {}, {}, "").text;
      X.toast(X.t("tasks.action_failed", { message: text }));
    }
  }

  function showWorkers(workers) {
    rows("workers-table", workers, "ops.no_workers", (worker, row) => {
      row.dataset.workerId = worker.id;
      row.dataset.stale = String(worker.stale);
      const heartbeat = X.element("span");
      heartbeat.append(
        worker.stale
          ? badge(X.t("ops.stale"), "failed")
          : badge(X.t("ops.alive"), "completed"),
        " ",
        X.element("span", X.formatDateTime(worker.heartbeat_at), "muted"),
      );
      const current = X.element("span");
      current.append(X.formatNumber(worker.current_tasks.length));
      for (const id of worker.current_tasks) {
        current.append(" ", X.element("code", shortId(id), "muted"));
      }
      return {
        worker: X.element("code", worker.id),
        host: `${worker.host} (pid ${worker.pid})`,
        started: X.formatDateTime(worker.started_at),
        current,
        rate: X.formatNumber(Math.round(worker.rows_per_s)),
        heartbeat,
      };
    });
  }

  function showQueue(queue, counts) {
    document.getElementById("queue-depth").textContent = queue.waiting === null
      ? X.t("ops.queue_unknown", { name: queue.name })
      : X.t("ops.queue_depth", { name: queue.name, count: X.formatNumber(queue.waiting) });
    const byKind = new Map();
    for (const count of counts) {
      if (!byKind.has(count.kind)) {
        byKind.set(count.kind, { kind: count.kind });
      }
      byKind.get(count.kind)[count.status] = count.count;
    }
    rows("counts-table", [...byKind.values()], "ops.no_tasks", (kind, row) => {
      row.dataset.kind = kind.kind;
      const cells = { kind: X.t(`ops.kind.${kind.kind}`) };
      for (const status of STATUSES) {
        cells[status] = X.formatNumber(kind[status] || 0);
      }
      return cells;
    });
  }

  function showTasks(slowest, failed) {
    rows("slowest-table", slowest, "ops.no_tasks", (task, row) => {
      row.dataset.taskId = task.id;
      return {
        task: taskCell(task),
        owner: task.owner,
        status: X.taskList.statusBadge(task),
        duration: X.t("ops.seconds", { seconds: X.formatNumber(Math.round(task.duration_s)) }),
        rows: rowsText(task),
        worker: task.worker_id && X.element("code", task.worker_id, "muted"),
        actions: actionsCell(task),
      };
    });
    rows("failed-table", failed, "ops.no_failed", (task, row) => {
      row.dataset.taskId = task.id;
      return {
        task: taskCell(task),
        owner: task.owner,
        finished: X.formatDateTime(task.finished_at),
        error: X.element("span", failureText(task), "failure"),
        actions: actionsCell(task),
      };
    });
  }

  // One refresh at a time; the next is planned when this one ends, so a slow answer never
  // piles requests up.
  async function refresh() {
    clearTimeout(timer);
    try {
      const summary = await X.api("GET", "/api/ops/summary");
      showWorkers(summary.workers);
      showQueue(summary.queue, summary.counts);
      showTasks(summary.slowest, summary.failed);
      liveState.textContent = X.t("ops.live", { seconds: REFRESH_S });
      liveState.className = "live-state live";
    } catch (problem) {
      liveState.textContent = X.t("ops.offline", { message: problem.message });
      liveState.className = "live-state polling";
    }
    timer = setTimeout(refresh, REFRESH_S * 1000);
  }

  refresh();
});
