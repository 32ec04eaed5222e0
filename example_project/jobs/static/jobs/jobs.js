// The jobs page: show each job's state as it arrives on /ws/jobs/.
// Every message is one job's state, {id, description, status, status_label,
// progress, outcome, updated_at}; the list keeps the newest state of each.
// On (re)connection the server sends the latest jobs again, so nothing
// that changed while the socket was down is missed.
// Reconnects after a drop, waiting twice as long after each failed attempt.

const MIN_DELAY_MS = 500;
const MAX_DELAY_MS = 10000;

const list = document.getElementById("jobs");
const template = document.getElementById("job-template");
const status = document.getElementById("jobs-status");

const scheme = window.location.protocol === "https:" ? "wss" : "ws";
const url = `${scheme}://${window.location.host}/ws/jobs/`;

let delay = MIN_DELAY_MS;

function rowFor(id) {
  let row = document.getElementById(`job-${id}`);
  if (row) {
    return row;
  }
  row = template.content.firstElementChild.cloneNode(true);
  row.id = `job-${id}`;
  row.dataset.id = id;
  row.dataset.updated = "";
  // Newest job first: before the first row of an older job.
  const older = [...list.querySelectorAll("li[data-id]")].find(
    (other) => Number(other.dataset.id) < id,
  );
  list.insertBefore(row, older || null);
  document.getElementById("no-jobs")?.remove();
  return row;
}

function show(job) {
  const row = rowFor(job.id);
  // An older state can arrive after a newer one (the list sent on
  // connection races with the news): keep the newest.
  if (row.dataset.updated > job.updated_at) {
    return;
  }
  row.dataset.updated = job.updated_at;
  row.dataset.status = job.status;
  row.querySelector(".description").textContent = job.description;
  const bar = row.querySelector("progress");
  bar.value = job.progress;
  bar.textContent = `${job.progress} %`;
  row.querySelector(".status").textContent = job.status_label;
  row.querySelector(".outcome").textContent = job.outcome;
}

function connect() {
  status.value = "connecting";
  const socket = new WebSocket(url);
  socket.addEventListener("open", () => {
    delay = MIN_DELAY_MS;
    status.value = "open";
  });
  socket.addEventListener("message", (event) => {
    const data = JSON.parse(event.data);
    if ("error" in data) {
      console.error(data.error);
    } else {
      show(data);
    }
  });
  socket.addEventListener("close", () => {
    status.value = `closed (reconnecting in ${(delay / 1000).toFixed(1)} s)`;
    setTimeout(connect, delay);
    delay = Math.min(delay * 2, MAX_DELAY_MS);
  });
}

connect();
