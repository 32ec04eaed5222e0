// The room page: send what is typed to /ws/chat/<room>/, show what arrives.
// Each message arrives once saved, as {id, author, message}.
// Reconnects after a drop, waiting twice as long after each failed attempt.

const MIN_DELAY_MS = 500;
const MAX_DELAY_MS = 10000;

const roomName = JSON.parse(document.getElementById("room-name").textContent);
const log = document.getElementById("chat-log");
const status = document.getElementById("chat-status");
const form = document.getElementById("chat-form");
const input = document.getElementById("chat-message-input");
const submit = document.getElementById("chat-message-submit");

const scheme = window.location.protocol === "https:" ? "wss" : "ws";
const url = `${scheme}://${window.location.host}/ws/chat/${roomName}/`;

let socket = null;
let delay = MIN_DELAY_MS;

function showState(state, detail = "") {
  status.value = detail ? `${state} (${detail})` : state;
  submit.disabled = state !== "open";
}

function append(line) {
  log.append(line);
  log.scrollTop = log.scrollHeight;
}

function appendMessage({ id, author, message }) {
  const line = document.createElement("p");
  line.dataset.id = id;
  const name = document.createElement("span");
  name.className = "author";
  name.textContent = author;
  line.append(name, `: ${message}`);
  append(line);
}

function appendError(text) {
  const line = document.createElement("p");
  line.className = "error";
  line.textContent = text;
  append(line);
}

function connect() {
  showState("connecting");
  socket = new WebSocket(url);
  socket.addEventListener("open", () => {
    delay = MIN_DELAY_MS;
    showState("open");
  });
  socket.addEventListener("message", (event) => {
    const data = JSON.parse(event.data);
    if ("error" in data) {
      appendError(data.error);
    } else {
      appendMessage(data);
    }
  });
  socket.addEventListener("close", () => {
    showState("closed", `reconnecting in ${(delay / 1000).toFixed(1)} s`);
    setTimeout(connect, delay);
    delay = Math.min(delay * 2, MAX_DELAY_MS);
  });
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const message = input.value;
  if (!message.trim() || socket.readyState !== WebSocket.OPEN) {
    return;
  }
  socket.send(JSON.stringify({ message }));
  input.value = "";
  input.focus();
});

log.scrollTop = log.scrollHeight;
connect();
