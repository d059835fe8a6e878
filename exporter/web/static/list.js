// A type's list page: filters, a paged table, and Export with exactly those filters.
"use strict";

document.addEventListener("DOMContentLoaded", async () => {
  const X = window.Exporter;
  const PAGE_SIZE = 20;
  const form = document.getElementById("filters");
  const table = document.getElementById("list-table");
  const tbody = table.tBodies[0];
  const columns = [...table.tHead.rows[0].cells].map((th) => ({
    field: th.dataset.field,
    kind: th.dataset.kind,
    label: th.textContent,
    values: th.dataset.values,
    alerts: th.dataset.alerts ? th.dataset.alerts.split(" ") : [],
  }));
  const exportButton = document.getElementById("export-button");
  const notice = document.getElementById("export-notice");
  let applied = {};
  let page = 1;

  function formFilters() {
    const filters = {};
    for (const [name, value] of new FormData(form)) {
      const text = String(value).trim();
      if (text) {
        filters[name] = text;
      }
    }
    return filters;
  }

  function sameFilters(a, b) {
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length && keys.every((key) => a[key] === b[key]);
  }

  // How a filter reads on screen: its label, and a select's chosen label or an input's text.
  function describeFilters(filters) {
    const labels = formLabels();
    const parts = Object.keys(filters).map((name) => {
      const input = form.elements[name];
      const shown = input.tagName === "SELECT" ? input.selectedOptions[0].text : filters[name];
      return X.t("filters.pair", { label: labels[name], value: shown });
    });
    return parts.length ? parts.join(X.t("filters.separator")) : X.t("export.all_rows");
  }

  // Each filter's name as its label reads on the form, for messages about it.
  function formLabels() {
    const labels = {};
    for (const input of form.elements) {
      const label = input.name && input.closest("label");
      if (label) {
        labels[input.name] = label.firstChild.textContent.trim();
      }
    }
    return labels;
  }

  function clearFieldErrors() {
    for (const message of form.querySelectorAll(".field-error")) {
      message.remove();
    }
    for (const input of form.querySelectorAll("[aria-invalid]")) {
      input.removeAttribute("aria-invalid");
      input.removeAttribute("aria-describedby");
    }
  }

  // A problem with the filters is said once, by the input it is about; false when it is not
  // about the form's inputs (the caller says it in its own place).
  function showFieldErrors(problem) {
    clearFieldErrors();
    const { fields } = X.describeError(problem.error || {}, formLabels());
    if (!fields.size || ![...fields.keys()].every((name) => form.elements[name])) {
      return false;
    }
    for (const [name, text] of fields) {
      const input = form.elements[name];
      const message = X.element("span", text, "field-error");
      message.id = `field-error-${name}`;
      // Inside the label, which would make it part of the input's name: it is the description.
      message.setAttribute("aria-hidden", "true");
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", message.id);
      input.after(message);
    }
    return true;
  }

  function cellText(column, item) {
    const value = item[column.field];
    switch (column.kind) {
      case "datetime":
        return X.formatDateTime(value);
      case "number":
        return X.formatNumber(value);
      case "enum":
        return X.t(`${column.values}.${value}`);
      case "list":
        return (value || []).join(", ");
      default:
        return value === null || value === undefined ? "" : value;
    }
  }

  function render(data) {
    if (!data.items.length) {
      X.stateRow(tbody, columns.length, table.dataset.empty, "empty");
    } else {
      tbody.replaceChildren(...data.items.map((item) => {
        const row = X.element("tr");
        for (const column of columns) {
          const cell = X.element("td", cellText(column, item), `kind-${column.kind}`);
          cell.dataset.label = column.label;
          if (column.alerts.includes(item[column.field])) {
            cell.classList.add("alert");
          }
          row.append(cell);
        }
        return row;
      }));
    }
    X.showPage(data.page, data.page_size, data.total, (to) => {
      page = to;
      load();
    });
  }

  async function load() {
    table.setAttribute("aria-busy", "true");
    X.stateRow(tbody, columns.length, X.t("list.loading"), "loading");
    const query = new URLSearchParams({ ...applied, page, page_size: PAGE_SIZE });
    try {
      render(await X.api("GET", `${table.dataset.source}?${query}`));
      clearFieldErrors();
    } catch (problem) {
      if (showFieldErrors(problem)) {
        X.clearPager();
        X.stateRow(tbody, columns.length, X.t("list.fix_filters"), "error");
      } else {
        X.failedRow(tbody, columns.length, problem, load);
      }
    } finally {
      table.removeAttribute("aria-busy");
    }
  }

  function apply(filters) {
    applied = filters;
    page = 1;
    const url = new URL(window.location.href);
    url.search = new URLSearchParams(filters).toString();
    window.history.replaceState(null, "", url);
    return load();
  }

  function showNotice(text, className, link) {
    notice.className = `notice ${className}`;
    notice.replaceChildren(X.element("span", text));
    if (link) {
      notice.append(" ", link);
    }
    notice.hidden = false;
  }

  async function loadOptions(select) {
    try {
      const data = await X.api("GET", select.dataset.options);
      for (const item of data.items) {
        const option = X.element("option", item[select.dataset.optionLabel]);
        option.value = String(item[select.dataset.optionValue]);
        select.append(option);
      }
    } catch (problem) {
      select.title = X.t("list.failed", { message: problem.message });
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    apply(formFilters());
  });
  form.addEventListener("reset", () => apply({}));

  // The page has no Export button for an account that may not export this type.
  exportButton?.addEventListener("click", async () => {
    // What is exported is what the table shows: unapplied edits in the form are applied first.
    const filters = formFilters();
    if (!sameFilters(filters, applied)) {
      apply(filters);
    }
    exportButton.disabled = true;
    showNotice(X.t("export.creating"), "busy");
    try {
      await X.api("POST", "/api/export-tasks", {
        type: exportButton.dataset.type,
        format: document.getElementById("export-format").value,
        params: filters,
      });
      const link = X.element("a", X.t("export.go_to_tasks"));
      link.href = "/tasks";
      showNotice(X.t("export.created", { filters: describeFilters(filters) }), "success", link);
      link.focus();
    } catch (problem) {
      const message = showFieldErrors(problem) ? X.t("list.fix_filters") : problem.message;
      showNotice(X.t("export.failed", { message }), "error");
    } finally {
      exportButton.disabled = false;
    }
  });

  await Promise.all([...form.querySelectorAll("select[data-options]")].map(loadOptions));
  const fromUrl = Object.fromEntries(new URLSearchParams(window.location.search));
  for (const input of form.elements) {
    if (input.name && fromUrl[input.name]) {
      input.value = fromUrl[input.name];
    }
  }
  apply(formFilters());
});
