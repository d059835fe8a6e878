// The tasks page: the user's exports and imports, each kind in its table, kept current by the
// server's event stream, with polling while the stream is down.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const X = window.Exporter;
  const POLL_INTERVAL_S = 3;
  const taskList = X.taskList;
  const titles = JSON.parse(document.getElementById("type-titles").textContent);
  // What the account's role allows: retry only what it may still export, the names a filter's
  // values have in another list only if it may read that list.
  const access = JSON.parse(document.getElementById("access").textContent);
  // Each type's filters in its form's order: [{name, label: message key, kind, options: {value:
  // message key}, items: the list naming its values ({type_name, source, value, label})}].
  const paramsOfType = JSON.parse(document.getElementById("type-params").textContent);
  const liveState = document.getElementById("live-state");
  // The names of the values a filter takes from another list, by that list's source.
  const itemNames = new Map();
  let pollTimer = null;

  document.getElementById("tasks-intro").textContent = X.t("tasks.intro", { zone: X.timeZone() });

  const { typeTitle, paramLabels } = taskList.typeWords(titles, paramsOfType);

  // A date stays a date; an instant with its offset is shown in the page's zone; one without
  // an offset is in the export's zone and is shown as written.
  function formatParamTime(value) {
    const text = String(value);
    if (/T.*(Z|[+-]\d\d:?\d\d)$/.test(text)) {
      return X.formatDateTime(text);
    }
    return text.replace("T", " ");
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

  // Why the task failed, in the page's language (the English error of a task failed before
  // failures had codes).
  function failureText(task) {
    if (!task.error) {
      return "";
    }
    const failure = { code: task.error_code, params: task.error_params, message: task.error };
    return X.describeError(failure, paramLabels(task.type)).text;
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

  function exportCells(task) {
    return {
      type: typeTitle(task.type),
      format: task.format,
      filters: describeParams(task),
      status: taskList.statusBadge(task),
      progress: taskList.progressCell(task, "tasks"),
      created: taskList.timeCell(task.created_at),
      finished: taskList.timeCell(task.finished_at),
      size: X.formatBytes(task.file_size),
      rows: X.formatNumber(task.row_count),
      error: failureText(task),
    };
  }

  const exports = taskList.create({
    table: document.getElementById("tasks-table"),
    pager: "page",
    path: "/api/export-tasks",
    prefix: "tasks",
    cells: exportCells,
    fileUrl: (task) => (task.status === "completed" ? task.download_url : null),
    mayRetry: (task) => access.exportable_types.includes(task.type),
    labels: (task) => paramLabels(task.type),
    empty() {
      if (!access.export_page) {
        return [X.t("tasks.empty_no_export")];
      }
      const link = X.element("a", X.t(access.export_page.label));
      link.href = access.export_page.path;
      return [X.t("tasks.empty"), link];
    },
    prepare: loadItemNames,
    loaded() {},
  });
  const imports = X.importTasks(access, typeTitle);
  const kinds = [exports, imports];

  function load() {
    for (const kind of kinds) {
      kind.load();
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

  if (!window.EventSource) {
    startPolling();
    return;
  }
  // The browser reconnects by itself; each (re)connection begins with "ready" and fresh lists.
  // Exports come as "task", imports as "import_task"; a deletion names its task's id.
  const stream = new EventSource("/api/export-tasks/stream");
  stream.addEventListener("ready", () => {
    stopPolling();
    load();
  });
  stream.addEventListener("task", (event) => exports.onTask(JSON.parse(event.data)));
  stream.addEventListener("import_task", (event) => imports.onTask(JSON.parse(event.data)));
  stream.addEventListener("deleted", (event) => {
    const { id } = JSON.parse(event.data);
    for (const kind of kinds) {
      kind.onDeleted(id);
    }
  });
  stream.addEventListener("error", startPolling);
});
