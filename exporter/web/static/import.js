// A list page's Import dialog: a template to fill in, the file, what to do with it, and the
// upload with its progress; once the task exists, a notice leads to the tasks page.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const X = window.Exporter;
  const dialog = document.getElementById("import-dialog");
  const form = document.getElementById("import-form");
  const fileInput = document.getElementById("import-file");
  const submit = document.getElementById("import-submit");
  const progress = document.getElementById("import-progress");
  const bar = progress.querySelector("progress");
  const progressText = progress.querySelector(".progress-text");
  const errorBox = document.getElementById("import-error");
  const notice = document.getElementById("import-notice");
  const maxBytes = Number(dialog.dataset.maxBytes);
  // The form's fields as the dialog names them, for messages about them.
  const labels = {
    file: X.t("import.file"),
    mode: X.t("import.mode"),
    on_error: X.t("import.on_error"),
    type: X.t("import.type"),
  };
  let upload = null;

  document.getElementById("import-file-hint").textContent = X.t("import.file_hint", {
    size: X.formatBytes(maxBytes),
  });

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = false;
    fileInput.setAttribute("aria-invalid", "true");
  }

  function clearError() {
    errorBox.hidden = true;
    errorBox.textContent = "";
    fileInput.removeAttribute("aria-invalid");
  }

  function showProgress(fraction) {
    progress.hidden = false;
    const percent = Math.floor(fraction * 100);
    bar.value = percent;
    progressText.textContent = X.t("import.uploading", { percent });
  }

  // Sizes read as the page writes them, not as a count of bytes.
  function describe(problem) {
    const error = { ...problem.error };
    if (error.code === "upload_too_large") {
      error.params = { ...error.params, limit: X.formatBytes(error.params?.limit ?? maxBytes) };
    }
    return X.describeError(error, labels, "import").text;
  }

  // XMLHttpRequest, not fetch: only it tells how far the upload got.
  function send(body) {
    return new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      upload = request;
      request.open("POST", "/api/import-tasks");
      request.setRequestHeader("Accept", "application/json");
      const csrf = X.csrfToken();
      if (csrf) {
        request.setRequestHeader("X-CSRF-Token", csrf);
      }
      request.responseType = "json";
      request.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) {
          showProgress(event.loaded / event.total);
        }
      });
      // Sent: the server checks the file and creates the task.
      request.upload.addEventListener("load", () => {
        bar.removeAttribute("value");
        progressText.textContent = X.t("import.checking");
      });
      request.addEventListener("load", () => {
        const data = request.response;
        if (request.status >= 200 && request.status < 300 && data) {
          resolve(data);
          return;
        }
        const error = data && data.error;
        if (request.status === 401 || (error && error.code === "account_inactive")) {
          X.signInAgain();
        }
        reject(new X.ApiError(request.status, error || {
          code: "http_error", params: { status: String(request.status) },
        }));
      });
      request.addEventListener("error", () => reject(new X.ApiError(0, { code: "network" })));
      request.addEventListener("abort", () => reject(null));
      request.send(body);
    });
  }

  function created(task) {
    notice.className = "notice success";
    const link = X.element("a", X.t("import.go_to_tasks"));
    link.href = "/tasks#imports";
    const words = task.mode === "apply" ? "import.created_apply" : "import.created_validate";
    notice.replaceChildren(X.element("span", X.t(words, { file: task.file_name })), " ", link);
    notice.hidden = false;
    dialog.close();
    link.focus();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    const file = fileInput.files[0];
    if (!file) {
      showError(X.t("import.no_file"));
      fileInput.focus();
      return;
    }
    // A file the server would refuse after the whole upload is refused before it starts.
    if (maxBytes && file.size > maxBytes) {
      const message = X.t("import.error.upload_too_large", { limit: X.formatBytes(maxBytes) });
      showError(X.t("import.failed", { message }));
      return;
    }
    const body = new FormData();
    body.append("type", dialog.dataset.type);
    body.append("mode", form.elements.mode.value);
    body.append("on_error", form.elements.on_error.value);
    body.append("file", file);
    submit.disabled = true;
    showProgress(0);
    try {
      created(await send(body));
    } catch (problem) {
      if (problem) {
        showError(X.t("import.failed", { message: describe(problem) }));
      }
    } finally {
      upload = null;
      submit.disabled = false;
      progress.hidden = true;
    }
  });

  // Closing the dialog stops an upload under way: nothing is created from half a file.
  dialog.addEventListener("close", () => {
    if (upload) {
      upload.abort();
    }
  });

  document.getElementById("import-close").addEventListener("click", () => dialog.close());

  document.getElementById("import-button").addEventListener("click", () => {
    clearError();
    form.reset();
    progress.hidden = true;
    dialog.showModal();
  });

  fileInput.addEventListener("change", clearError);

  // A template is checked (HEAD) before the browser is sent to it, so a refusal is said here in
  // words, not shown as the API's JSON.
  for (const link of dialog.querySelectorAll("a[data-template]")) {
    link.addEventListener("click", async (event) => {
      event.preventDefault();
      try {
        await X.api("HEAD", link.href);
      } catch (problem) {
        showError(X.t("import.template_failed", { message: describe(problem) }));
        return;
      }
      window.location.assign(link.href);
    });
  }
});
