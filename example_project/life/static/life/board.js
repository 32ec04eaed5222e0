// The board page: listen to /ws/life/<board>/watch/ and draw the grid.
//
// Each cell's state arrives on its own, relayed by the server as
// {type: "state", x, y, width, height, generation, alive}. Cells far apart
// may be a few generations apart, so states are gathered by generation and a
// generation is drawn once every cell of the board has reported it. A cell
// never falls two generations behind the drawn one, nor re-sends states that
// old: such a state is from a new run on this board, so start over.
// Reconnects after a drop, waiting twice as long after each failed attempt.

const MIN_DELAY_MS = 500;
const MAX_DELAY_MS = 10000;
// Generations gathered at most while waiting for one to complete.
const MAX_PENDING = 200;
const MAX_CANVAS_PX = 480;

const boardName = JSON.parse(document.getElementById("board-name").textContent);
const canvas = document.getElementById("life-board");
const context = canvas.getContext("2d");
const status = document.getElementById("life-status");
const generationOutput = document.getElementById("life-generation");
const sizeOutput = document.getElementById("life-size");
const newestOutput = document.getElementById("life-newest");

const scheme = window.location.protocol === "https:" ? "wss" : "ws";
const url = `${scheme}://${window.location.host}/ws/life/${boardName}/watch/`;

let width = 0;
let height = 0;
let cellPx = 0;
let shown = -1; // the generation on the canvas
let newest = -1; // the newest generation any cell reported
let pending = new Map(); // generation -> Map(cell index -> alive)
let delay = MIN_DELAY_MS;

function startOver(newWidth, newHeight) {
  width = newWidth;
  height = newHeight;
  shown = -1;
  newest = -1;
  pending = new Map();
  cellPx = Math.max(2, Math.floor(MAX_CANVAS_PX / Math.max(width, height)));
  canvas.width = width * cellPx;
  canvas.height = height * cellPx;
  context.fillStyle = "#eee";
  context.fillRect(0, 0, canvas.width, canvas.height);
  sizeOutput.value = `${width} × ${height} (${width * height} cells)`;
  generationOutput.value = "none yet";
  newestOutput.value = "none yet";
}

function draw(generation, cells) {
  const gap = cellPx >= 8 ? 1 : 0;
  context.fillStyle = "#ccc";
  context.fillRect(0, 0, canvas.width, canvas.height);
  for (const [index, alive] of cells) {
    const x = index % width;
    const y = Math.floor(index / width);
    context.fillStyle = alive ? "#222" : "#fff";
    context.fillRect(x * cellPx, y * cellPx, cellPx - gap, cellPx - gap);
  }
  shown = generation;
  generationOutput.value = String(generation);
  for (const old of pending.keys()) {
    if (old <= shown) {
      pending.delete(old);
    }
  }
}

function takeState({ x, y, generation, alive }) {
  if (generation <= shown) {
    return;
  }
  if (generation > newest) {
    newest = generation;
    newestOutput.value = String(newest);
  }
  let cells = pending.get(generation);
  if (cells === undefined) {
    if (pending.size >= MAX_PENDING) {
      // A state was lost (the page fell behind): forget the oldest.
      pending.delete(Math.min(...pending.keys()));
    }
    cells = new Map();
    pending.set(generation, cells);
  }
  cells.set(y * width + x, alive);
  if (cells.size === width * height) {
    draw(generation, cells);
  }
}

function take(message) {
  if (message.type !== "state") {
    return;
  }
  if (message.width !== width || message.height !== height) {
    startOver(message.width, message.height);
  } else if (message.generation < shown - 1) {
    startOver(width, height);
  }
  takeState(message);
}

function connect() {
  status.value = "connecting";
  const socket = new WebSocket(url);
  socket.addEventListener("open", () => {
    delay = MIN_DELAY_MS;
    status.value = "open";
  });
  socket.addEventListener("message", (event) => {
    take(JSON.parse(event.data));
  });
  socket.addEventListener("close", () => {
    status.value = `closed (reconnecting in ${(delay / 1000).toFixed(1)} s)`;
    setTimeout(connect, delay);
    delay = Math.min(delay * 2, MAX_DELAY_MS);
  });
}

connect();
