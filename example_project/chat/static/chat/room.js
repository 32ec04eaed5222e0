// The room page: follow the room's stream, chat.<room>, and post what is
// typed, through realtime.js (the "django_realtime" of the page's import map).
//
// The page came with the messages saved so far and with the stream's
// position read just before them ("room-since"). Subscribing from that
// position brings every message saved since; after a reconnect, realtime.js
// resumes from the last message the page got. So a page that loses its
// connection catches up without reloading. A message that is both on the
// page and on the stream shows once: the log knows the ids it shows.

import { connect } from "django_realtime";

const roomName = JSON.parse(document.getElementById("room-name").textContent);
const since = JSON.parse(document.getElementById("room-since").textContent);
const log = document.getElementById("chat-log");
const status = document.getElementById("chat-status");
const form = document.getElementById("chat-form");
const input = document.getElementById("chat-message-input");
const submit = document.getElementById("chat-message-submit");

const shown = new Set(
  Array.from(log.querySelectorAll("p[data-id]"), (line) => Number(line.dataset.id)),
);

function append(line) {
  log.append(line);
  log.scrollTop = log.scrollHeight;
}

function appendMessage({ id, author, text }) {
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

// Where WebSockets are blocked, the same stream over SSE or long-polling.
const rt = connect(`/ws/chat/${roomName}/`, { httpUrl: `/realtime/chat/${roomName}/` });

rt.onState(({ state, delay, transport }) => {
  status.value =
    state === "reconnecting"
      ? `reconnecting in ${(delay / 1000).toFixed(1)} s`
      : transport && transport !== "websocket"
        ? `${state} (${transport})`
        : state;
  submit.disabled = state !== "open";
});

const room = rt.subscribe(`chat.${roomName}`, {
  since,
  onLost: reloadPage,
  onError: (error) => appendError(error.message),
});
room.on("message", appendMessage);

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

submit.disabled = true;
log.scrollTop = log.scrollHeight;
