// The room page: follow the room's stream, chat.<room>, and post what is
// typed, through realtime.js (the "django_realtime" of the page's import map).
//
// The page has one socket, /ws/chat/, a multiplexer (see
// example_project/chat/routing.py) on which it opens two topics: the
// room's stream with its presence, who is in the room (chat/<room>), and
// the user's jobs (jobs). Where that socket never opens (WebSockets
// blocked), the room's stream and its presence fall back to server-sent
// events or long-polling on their own route (a page listening there is a
// member, docs/topics/presence.rst), and the jobs badge says it is
// unavailable.
//
// The page came with the messages saved so far and with the stream's
// position read just before them ("room-since"). Subscribing from that
// position brings every message saved since; after a reconnect, realtime.js
// resumes from the last message the page got. So a page that loses its
// connection catches up without reloading. A message that is both on the
// page and on the stream shows once: the log knows the ids it shows.

import { connect, multiplex, presence } from "django_realtime";
import { keepDraft } from "./draft.js";
import { decorate } from "./look.js";

const roomName = JSON.parse(document.getElementById("room-name").textContent);
const since = JSON.parse(document.getElementById("room-since").textContent);
const log = document.getElementById("chat-log");
const status = document.getElementById("chat-status");
const form = document.getElementById("chat-form");
const input = document.getElementById("chat-message-input");
const submit = document.getElementById("chat-message-submit");
const onlineNames = document.getElementById("online-names");
const jobsCount = document.getElementById("jobs-count");
const jobsStream = JSON.parse(document.getElementById("jobs-stream").textContent);

const shown = new Set(
  Array.from(log.querySelectorAll("p[data-id]"), (line) => Number(line.dataset.id)),
);

function append(line) {
  log.append(line);
  log.scrollTop = log.scrollHeight;
}

function appendMessage({ id, author, text, created }) {
  if (shown.has(id)) {
    return;
  }
  shown.add(id);
  const line = document.createElement("p");
  line.dataset.id = id;
  const name = document.createElement("span");
  name.className = "author";
  name.textContent = author;
  line.append(name, `: ${text}`);
  decorate(line, { author, created });
  append(line);
}

function appendError(text) {
  const line = document.createElement("p");
  line.className = "error";
  line.textContent = text;
  append(line);
}

// Messages are gone for good: the server restarted with its in-memory
// history, or the page was away longer than the stream keeps messages. The
// log may lack some, so load the page again, but not twice in a row: if
// history is lost again at once, something is wrong with the server's set-up
// (several processes without Redis, say), and reloading would not help.
const RELOADED_AT = `chat-reloaded:${roomName}`;

function reloadPage({ reason }) {
  const last = Number(sessionStorage.getItem(RELOADED_AT));
  if (Date.now() - last < 10000) {
    appendError(`Some messages may be missing (${reason}): reload the page.`);
    return;
  }
  sessionStorage.setItem(RELOADED_AT, String(Date.now()));
  window.location.reload();
}

function showStatus({ state, delay, transport }) {
  status.value =
    state === "reconnecting"
      ? `reconnecting in ${(delay / 1000).toFixed(1)} s`
      : transport && transport !== "websocket"
        ? `${state} (${transport})`
        : state;
  submit.disabled = state !== "open";
}

// The position of the last message the page got: where a fallback resumes.
let position = since;
let rt = null;

/** Follow the room's stream on `client` (a Realtime). */
function follow(client) {
  rt = client;
  client.onState(showStatus);
  const room = client.subscribe(`chat.${roomName}`, {
    since: position,
    onLost: reloadPage,
    onError: (error) => appendError(error.message),
    onPosition: (moved) => (position = moved),
  });
  room.on("message", appendMessage);
}

/** Keep the online badge: the room's members (docs/topics/presence.rst),
 * each user once however many pages they have open (their number of pages
 * in the title). */
function followPresence(client) {
  const here = presence(client, `chat.${roomName}`, {
    onError: () => (onlineNames.value = "unavailable"),
  });
  here.on("change", (live) => {
    const members = [...live.members.values()].sort((a, b) =>
      a.info.username < b.info.username ? -1 : 1,
    );
    onlineNames.value = members.map(({ info }) => info.username).join(", ");
    onlineNames.title = members
      .map(({ info, connections }) => `${info.username}: ${connections}`)
      .join(", ");
  });
  return here;
}

/**
 * Keep the count of the user's queued and running jobs: their state from
 * /jobs/state/ each time the stream (re)starts, then the news on the stream.
 * The newest version of each job wins, whichever way it came.
 */
function followJobs(mux) {
  const jobs = new Map(); // id -> {version, status}
  const take = ({ id, version, status }) => {
    if ((jobs.get(id)?.version ?? -1) < version) jobs.set(id, { version, status });
  };
  const show = () => {
    const active = [...jobs.values()].filter(
      ({ status }) => status === "queued" || status === "running",
    );
    jobsCount.value = String(active.length);
  };
  const reload = async () => {
    try {
      const response = await fetch("/jobs/state/", { credentials: "same-origin" });
      for (const job of (await response.json()).jobs ?? []) take(job);
      show();
    } catch {
      jobsCount.value = "?";
    }
  };
  mux.streams("jobs").subscribe(jobsStream, {
    onSubscribed: reload,
    onLost: reload,
    onPublication: ({ job }) => {
      if (job) take(job);
      show();
    },
  });
}

const mux = multiplex("/ws/chat/");
let muxOpened = false;
mux.onState(({ state }) => {
  if (state === "open") {
    muxOpened = true;
  } else if (state === "reconnecting" && !muxOpened) {
    // The shared socket never opened: WebSockets do not get through. The
    // room's stream goes on over its own route, which falls back by itself.
    here.close();
    mux.close();
    rt.close();
    jobsCount.value = "unavailable";
    follow(connect(`/ws/chat/${roomName}/`, { httpUrl: `/realtime/chat/${roomName}/` }));
    here = followPresence(rt);
  }
});
follow(mux.streams(`chat/${roomName}`));
let here = followPresence(rt);
followJobs(mux);

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = input.value;
  if (!text.trim()) {
    return;
  }
  input.value = "";
  input.focus();
  try {
    // The message shows when it comes back on the stream, saved.
    await rt.request("post", { text });
  } catch (error) {
    // Refused, or the connection dropped before the answer (then it may
    // have been saved: the stream will tell). Give the text back.
    appendError(error.message);
    input.value ||= text;
  }
});

// What is typed survives a reload (draft.js), one draft per room.
keepDraft(input, `chat-draft:${roomName}`);
submit.disabled = true;
log.scrollTop = log.scrollHeight;
