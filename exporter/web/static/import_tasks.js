// The imports on the tasks page: each uploaded file, what was asked of it, how far it got, what
// it created, updated or rejected, and why (each row error in the page's language).
"use strict";

window.Exporter.importTasks = (access, typeTitle) => {
  const X = window.Exporter;
  const taskList = X.taskList;
  // How many row errors a row shows; the rest are in the report.
  const SHOWN_ERRORS = 3;
  const section = document.getElementById("imports");
  const COUNTS = ["created", "updated", "unchanged", "rejected"];
  let shown = false;

  function fileCell(task) {
    const cell = X.element("div", undefined, "file");
    cell.append(X.element("span", task.file_name, "file-name"));
    const about = [task.format, X.formatBytes(task.file_size)].filter(Boolean).join(" · ");
    cell.append(X.element("span", about, "muted"));
    return cell;
  }

  function modeCell(task) {
    const cell = X.element("div", undefined, "mode");
    cell.append(X.element("span", X.t(`imports.mode.${task.mode}`)));
    cell.append(X.element("span", X.t(`imports.on_error.${task.on_error}`), "muted"));
    return cell;
  }

  // Nothing was written by a check, nor by an import refused for its rejected rows: then the
  // counts say what an import would do.
  function wrote(task) {
    return task.mode === "apply" && task.status === "completed";
  }

  function countsCell(task) {
    if (!task.counts) {
      return "";
    }
    const tense = wrote(task) ? "done" : "would";
    const cell = X.element("div", undefined, "counts");
    for (const name of COUNTS) {
      const count = X.element(
        "span", X.t(`imports.count.${tense}.${name}`, { n: X.formatNumber(task.counts[name]) }),
        `count count-${name}`);
      count.dataset.count = name;
      if (name === "rejected" && task.counts.rejected) {
        count.classList.add("alert");
      }
      cell.append(count);
    }
    return cell;
  }

  // Where in the file (a csv has rows only, a workbook its sheets too), and what is wrong.
  function rowError(error) {
    const row = X.formatNumber(error.row);
    const at = error.sheet
      ? X.t("row.at_sheet", { sheet: error.sheet, row })
      : X.t("row.at", { row });
    // A key repeated across a workbook's sheets names the sheet it first appears in.
    const code = error.code === "duplicate_key" && error.params.first_sheet
      ? "duplicate_key_in_sheet" : error.code;
    const problem = { code, params: { column: error.column, ...error.params },
      message: error.message };
    const item = X.element("li", undefined, "row-error");
    item.append(X.element("span", at, "row-error-at"), " ",
      X.element("span", X.describeError(problem, {}, "row").text));
    return item;
  }

  function errorsCell(task) {
    const cell = X.element("div", undefined, "import-errors");
    if (task.error) {
      const failure = { code: task.error_code, params: task.error_params, message: task.error };
      cell.append(X.element("p", X.describeError(failure, {}, "imports").text, "failure"));
    }
    const errors = task.errors || [];
    if (errors.length) {
      const list = X.element("ul", undefined, "row-errors");
      list.append(...errors.slice(0, SHOWN_ERRORS).map(rowError));
      cell.append(list);
    }
    const rejected = task.counts ? task.counts.rejected : errors.length;
    if (rejected > SHOWN_ERRORS || errors.length > SHOWN_ERRORS) {
      const more = task.has_report ? "imports.more_errors_report" : "imports.more_errors";
      cell.append(X.element("p", X.t(more, { rejected: X.formatNumber(rejected) }), "muted"));
    }
    return cell.childNodes.length ? cell : "";
  }

  function importCells(task) {
    return {
      type: typeTitle(task.type),
      file: fileCell(task),
      mode: modeCell(task),
      status: taskList.statusBadge(task),
      progress: taskList.progressCell(task, "imports"),
      counts: countsCell(task),
      created: taskList.timeCell(task.created_at),
      finished: taskList.timeCell(task.finished_at),
      errors: errorsCell(task),
    };
  }

  return taskList.create({
    table: document.getElementById("import-tasks-table"),
    pager: "import-page",
    path: "/api/import-tasks",
    prefix: "imports",
    cells: importCells,
    fileUrl: (task) => (task.has_report ? task.report_url : null),
    // A retry uploads nothing: it reads the file the task keeps, if the account may still.
    mayRetry: (task) => access.importable_types.includes(task.type),
    labels: () => ({}),
    empty() {
      if (!access.import_page) {
        return [X.t("imports.empty_no_import")];
      }
      const link = X.element("a", X.t(access.import_page.label));
      link.href = access.import_page.path;
      return [X.t("imports.empty"), link];
    },
    prepare: async () => {},
    // Who may not import sees the section only while it has imports from before. The upload's
    // notice links here: once the imports are drawn, they are brought into view.
    loaded(data) {
      section.hidden = !access.importable_types.length && data.total === 0;
      if (!shown && window.location.hash === "#imports") {
        section.scrollIntoView();
      }
      shown = true;
    },
  });
};
