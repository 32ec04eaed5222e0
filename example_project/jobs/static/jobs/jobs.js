// The jobs page: the table of the user's jobs (everyone's, for staff), kept
// in sync with the "jobs.job" feed through realtime.js's collection().
//
// The view rendered the table from the database. The collection takes its
// own snapshot of the jobs the user may read, then follows the feed from
// the snapshot's position: every change after it arrives, and one the
// snapshot already had is skipped by its version (how many times the row
// was saved). After a reconnection the collection resumes the feed, with
// the changes missed filtered by the user's permissions of now; if those
// are gone, it takes a new snapshot. A row keeps the state with the highest
// version, so a state older than what it shows changes nothing.

import { collection, connect } from "django_realtime";

const table = document.getElementById("jobs");
const template = document.getElementById("job-template");
const connection = document.getElementById("jobs-status");
const problem = document.getElementById("jobs-error");

function rowFor(id) {
  let row = document.getElementById(`job-${id}`);
  if (row) {
    return row;
  }
  row = template.content.firstElementChild.cloneNode(true);
  row.id = `job-${id}`;
  row.dataset.id = id;
  // Newest job first: before the first row of an older job.
  const older = [...table.querySelectorAll("tr[data-id]")].find(
    (other) => Number(other.dataset.id) < id,
  );
  table.insertBefore(row, older || null);
  document.getElementById("no-jobs")?.remove();
  return row;
}

function show(job) {
  const row = rowFor(job.id);
  if (Number(row.dataset.version) >= job.version) {
    return; // the page shows this state, or a newer one, already
  }
  row.dataset.version = job.version;
  row.dataset.status = job.status;
  row.querySelector(".description").textContent = job.description;
  const bar = row.querySelector("progress");
  bar.value = job.progress;
  bar.textContent = `${job.progress} %`;
  row.querySelector(".status").textContent = job.status_label;
  row.querySelector(".outcome").textContent = job.outcome;
}

function report(message) {
  problem.textContent = message;
  problem.hidden = !message;
}

const rt = connect("/ws/jobs/");

rt.onState(({ state, delay, code }) => {
  if (state === "reconnecting") {
    connection.value = `reconnecting in ${(delay / 1000).toFixed(1)} s`;
  } else if (state === "closed") {
    connection.value = code === 4003 ? "closed: log in again" : "closed";
  } else {
    connection.value = state;
  }
});

const jobs = collection(rt, "jobs.job", {
  onError: (error) => report(`Cannot follow your jobs: ${error.message}`),
});
jobs.on("reset", (rows) => rows.forEach(show));
jobs.on("enter", show);
jobs.on("update", show);
// Deleted, or no longer the user's to see.
jobs.on("leave", (pk) => document.getElementById(`job-${pk}`)?.remove());

table.addEventListener("click", async (event) => {
  const button = event.target.closest("button.cancel");
  if (!button) {
    return;
  }
  button.disabled = true;
  try {
    // The row changes when the feed brings the cancel.
    await rt.request("cancel", { id: Number(button.closest("tr").dataset.id) });
    report("");
  } catch (error) {
    report(error.message);
  } finally {
    button.disabled = false;
  }
});
