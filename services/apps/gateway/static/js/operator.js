// The operator's page: a catalogue file or photo addresses in, their jobs followed to the end with each failure's
// reason; what each variant holds and whether its search graph covers it; reindex one variant into another.

import { call, postJSON, useKey } from "./api.js";
import { loadModels } from "./models.js";

const $ = (id) => document.getElementById(id);
const KEY = "stylefinder-operator-key"; // sessionStorage: gone when the tab closes
const POLL_MS = 1000;
const FAILURES_SHOWN = 200; // a poll asks for these; the count says how many more there are
const jobs = new Map(); // job id -> its <article>

function setKey(value) {
  useKey(value);
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

$("key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  setKey($("key").value.trim());
  $("key").value = "";
  await refreshVariants();
});
$("forget-key").addEventListener("click", () => {
  setKey(null);
  $("key-status").textContent = "The key is forgotten.";
});

function fail(error) {
  $("jobs-error").textContent = error.message;
}

$("catalogue-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("catalogue-file").files[0];
  if (!file) return;
  const form = new FormData();
  form.set("file", file, file.name);
  $("jobs-error").textContent = "";
  try {
    follow(await call("/v1/catalogues", { method: "POST", body: form }), `Catalogue ${file.name}`);
  } catch (error) {
    fail(error);
  }
});

$("urls-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const urls = $("image-urls").value.split(/\s+/).filter(Boolean);
  if (!urls.length) return;
  const items = urls.map((url) => ({ id: productId(url), images: [url] }));
  $("jobs-error").textContent = "";
  try {
    follow(await postJSON("/v1/products", { items }), `${urls.length} photo addresses`);
  } catch (error) {
    fail(error);
  }
});

/** A product id from a photo's address: its file name without the extension. */
function productId(url) {
  const name = decodeURIComponent(new URL(url, location.href).pathname.split("/").pop() || url);
  return name.replace(/\.[A-Za-z0-9]+$/, "") || url;
}

$("reindex-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("jobs-error").textContent = "";
  const source = $("reindex-from").value;
  const target = $("reindex-to").value;
  try {
    follow(await postJSON("/v1/reindex", { from: source, to: target }), `Reindex ${source} into ${target}`);
  } catch (error) {
    fail(error);
  }
});

/** Show an accepted job and poll it until it is done. */
function follow(accepted, title) {
  const article = document.createElement("article");
  article.setAttribute("aria-label", `Job: ${title}`);
  const heading = document.createElement("h3");
  heading.textContent = title;
  const bar = document.createElement("progress");
  bar.max = accepted.items;
  bar.value = 0;
  bar.setAttribute("aria-label", `Progress of ${title}`);
  const summary = document.createElement("p");
  summary.className = "summary";
  const failures = document.createElement("ul");
  failures.className = "failures";
  article.append(heading, bar, summary, failures);
  if (!jobs.size) $("jobs").replaceChildren();
  $("jobs").prepend(article);
  jobs.set(accepted.job_id, article);
  poll(accepted.job_id, bar, summary, failures);
}

async function poll(id, bar, summary, failures) {
  let report;
  try {
    report = await call(`/v1/jobs/${encodeURIComponent(id)}?failures=${FAILURES_SHOWN}`);
  } catch (error) {
    summary.textContent = `The job could not be read: ${error.message}`;
    const lasting = [401, 403, 404].includes(error.status); // no key, a narrower one, or a job forgotten
    if (!lasting) setTimeout(() => poll(id, bar, summary, failures), POLL_MS * 5);
    return;
  }
  const finished = report.indexed + report.unchanged + report.failed;
  bar.value = finished;
  const rate = report.items_per_s ? `, ${report.items_per_s.toFixed(1)} items/s` : "";
  const outcome = report.state === "done" ? `Finished: ${report.outcome.replace("_", " ")}. ` : `${report.state}: `;
  summary.textContent =
    `${outcome}${report.indexed} indexed, ${report.unchanged} unchanged, ${report.failed} failed ` +
    `of ${report.total}${rate}; ${report.queue_depth} items waiting in all.`;
  const lines = report.failures.map((failure) => `${failure.item_id}: ${failure.reason}`);
  const unshown = report.failed - report.failures.length;
  if (unshown > 0) lines.push(`… and ${unshown} more: GET /v1/jobs/${id} lists every one`);
  failures.replaceChildren(
    ...lines.map((text) => {
      const line = document.createElement("li");
      line.textContent = text;
      return line;
    }),
  );
  if (report.state === "done") refreshVariants();
  else setTimeout(() => poll(id, bar, summary, failures), POLL_MS);
}

async function refreshVariants() {
  let models;
  try {
    models = await loadModels();
  } catch (error) {
    $("key-status").textContent = error.status === 401 ? "Enter the admin key above." : error.message;
    return;
  }
  $("key-status").textContent = "";
  $("variants").replaceChildren(
    ...models.map((model) => {
      const row = document.createElement("tr");
      let graph = "covers every photo";
      if (!model.indexed_points) graph = "nothing indexed";
      else if (model.unindexed_points === null) graph = "built by the Qdrant server";
      else if (model.unindexed_points) graph = `${model.unindexed_points} photos searched exactly until its next build`;
      for (const text of [model.name, model.served ? "yes" : "no", model.indexed_points, graph, model.problem || ""]) {
        const cell = document.createElement("td");
        cell.textContent = String(text);
        row.append(cell);
      }
      return row;
    }),
  );
  for (const select of [$("reindex-from"), $("reindex-to")]) {
    const chosen = select.value;
    select.replaceChildren(...models.map((model) => new Option(model.name, model.name)));
    if (chosen) select.value = chosen;
  }
}

$("refresh").addEventListener("click", refreshVariants);
useKey(sessionStorage.getItem(KEY));
refreshVariants();
