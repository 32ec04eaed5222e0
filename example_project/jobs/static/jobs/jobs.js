// The jobs page: the table of the user's jobs, kept up to date from the
// user's stream of news, "jobs.user.<id>", through realtime.js.
//
// The view rendered the table from the database, and read the stream's
// position just before: the page subscribes from that position, so that
// the news published since the rendering is replayed first, and realtime.js
// resumes from the last news the page got after every reconnection. Each
// piece of news holds one job's whole state and its version (how many times
// its row was saved); a row keeps the state with the highest version, so
// news the page has seen already, or older than what it shows, changes
// nothing. When the server says that news was lost for good (its history
// is gone), the page reads the jobs again, without reloading.

import { connect } from "django_realtime";

const config = JSON.parse(document.getElementById("jobs-stream").textContent);
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

async function readJobsAgain() {
  try {
    const response = await fetch(config.stateUrl, {
      headers: { Accept: "application/json" },
    });
    if (!response.ok) {
      throw new Error(`${response.status} ${response.statusText}`);
    }
    const { jobs } = await response.json();
    jobs.forEach(show);
  } catch (error) {
    // Logged out, say: the page itself will say what to do.
    console.error("Could not read the jobs again; reloading:", error);
    window.location.reload();
  }
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

const news = rt.subscribe(config.name, {
  since: config.since,
  // The news since `since` is gone (a server that keeps it in memory
  // restarted, or the page was away too long): the subscription goes on
  // from now, and the jobs are read again to fill what was missed.
  onLost: readJobsAgain,
  onError: (error) => report(`Cannot follow your jobs: ${error.message}`),
});
// Every type of news ("created", "progress", "done"...) holds a job's state.
news.on("*", ({ job }) => show(job));

table.addEventListener("click", async (event) => {
  const button = event.target.closest("button.cancel");
  if (!button) {
    return;
  }
  button.disabled = true;
  try {
    // The row changes when the news of the cancel arrives.
    await rt.request("cancel", { id: Number(button.closest("tr").dataset.id) });
    report("");
  } catch (error) {
    report(error.message);
  } finally {
    button.disabled = false;
  }
});
