// The backend dashboard: polls /dashboard/data and renders it with DOM calls only (no HTML from data).
"use strict";

const POLL_MS = 1000;

function gib(bytes) {
  if (bytes === null || bytes === undefined) return "-";
  return (bytes / 2 ** 30).toFixed(2) + " GiB";
}

function mib(bytes) {
  if (bytes === null || bytes === undefined) return "-";
  return (bytes / 2 ** 20).toFixed(1) + " MiB";
}

function clock(seconds) {
  if (!seconds) return "-";
  return new Date(seconds * 1000).toLocaleTimeString();
}

function took(job) {
  if (!job.started_at || !job.finished_at) return "-";
  return (job.finished_at - job.started_at).toFixed(2) + " s";
}

function cell(row, content, className) {
  const td = document.createElement("td");
  if (content instanceof Node) td.appendChild(content);
  else td.textContent = content === null || content === undefined ? "-" : String(content);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function code(text) {
  const element = document.createElement("code");
  element.textContent = text;
  return element;
}

function fill(tableId, items, columns, emptyText) {
  const body = document.querySelector("#" + tableId + " tbody");
  body.replaceChildren();
  if (!items.length) {
    const row = body.insertRow();
    const td = cell(row, emptyText, "empty");
    td.colSpan = document.querySelectorAll("#" + tableId + " th").length;
    return;
  }
  for (const item of items) {
    const row = body.insertRow();
    row.dataset.id = item.id || item.name;
    for (const column of columns) {
      const value = column(item);
      cell(row, value);
    }
  }
}

function progressBar(job) {
  const bar = document.createElement("progress");
  bar.max = 1;
  bar.value = job.progress || 0;
  bar.title = Math.round((job.progress || 0) * 100) + "%";
  const wrap = document.createElement("span");
  wrap.appendChild(bar);
  wrap.appendChild(document.createTextNode(" " + Math.round((job.progress || 0) * 100) + "%"));
  return wrap;
}

function result(job) {
  if (job.state !== "done") {
    const span = document.createElement("span");
    span.className = "state-" + job.state;
    span.textContent = job.error || job.state;
    return span;
  }
  if (job.gallery_url) {
    const link = document.createElement("a");
    link.href = job.gallery_url;
    link.textContent = "open in gallery";
    return link;
  }
  return "exports ready";
}

function state(job) {
  const span = document.createElement("span");
  span.className = "state-" + job.state;
  span.textContent = job.state + " (" + job.status + ")";
  return span;
}

function define(list, term, value) {
  const dt = document.createElement("dt");
  dt.textContent = term;
  const dd = document.createElement("dd");
  dd.textContent = value;
  list.appendChild(dt);
  list.appendChild(dd);
}

function render(data) {
  const counts = data.counts;
  document.getElementById("summary").textContent =
    `${data.served.join(", ")} on ${data.device}, ${data.workers} worker(s): ` +
    `${counts.running} running, ${counts.queued} queued, ${counts.done} done, ` +
    `${counts.failed} failed, ${counts.cancelled} cancelled`;
  const galleryLink = document.getElementById("gallery-link");
  galleryLink.hidden = !data.gallery;
  if (data.gallery) galleryLink.href = data.gallery;

  const memory = document.getElementById("memory");
  memory.replaceChildren();
  const m = data.memory;
  define(memory, "Device", data.device);
  define(memory, "Memory budget", m.budget_bytes ? `${gib(m.in_use_bytes)} in use of ${gib(m.budget_bytes)}` : `${gib(m.in_use_bytes)} in use (no budget)`);
  define(memory, "Warm models", mib(m.models_bytes));
  if (m.cuda) {
    define(memory, "CUDA memory", `${m.cuda.allocated_gb.toFixed(2)} GiB allocated, ${m.cuda.reserved_gb.toFixed(2)} reserved of ${m.cuda.total_gb.toFixed(2)} GiB (${m.cuda.utilization.toFixed(1)}%)`);
  } else {
    define(memory, "CUDA memory", "no CUDA device");
  }

  fill("models", data.models, [
    (model) => model.name,
    (model) => model.precision,
    (model) => mib(model.bytes),
    (model) => (model.load_seconds === null ? "-" : model.load_seconds.toFixed(2) + " s"),
    (model) => clock(model.last_used),
  ], "No model loaded yet.");
  fill("running", data.jobs.running, [
    (job) => code(job.id.slice(0, 8)),
    (job) => job.model,
    (job) => job.views,
    progressBar,
    (job) => job.stage,
    (job) => clock(job.started_at),
  ], "Nothing running.");
  fill("queued", data.jobs.queued, [
    (job) => code(job.id.slice(0, 8)),
    (job) => job.model,
    (job) => job.views,
    (job) => job.export_format,
    (job) => clock(job.created_at),
  ], "Nothing queued.");
  fill("finished", data.jobs.finished, [
    (job) => code(job.id.slice(0, 8)),
    (job) => job.model,
    state,
    took,
    result,
  ], "No finished jobs.");
}

async function poll() {
  const error = document.getElementById("error");
  try {
    const response = await fetch("/dashboard/data", { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    render(await response.json());
    error.hidden = true;
    document.body.dataset.refreshed = String(Date.now());
  } catch (exc) {
    error.hidden = false;
    error.textContent = "Cannot refresh: " + exc.message;
  }
  setTimeout(poll, POLL_MS);
}

document.addEventListener("DOMContentLoaded", poll);
