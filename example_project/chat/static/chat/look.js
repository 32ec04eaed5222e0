// How a message line of the room's log looks: the user's own messages
// marked (class "mine"), and when each was said, in the reader's local time.
//
// The server renders the saved messages with <time datetime="..."> in UTC
// (room.html); on load, this module rewrites those times in the reader's
// time zone. room.js calls decorate() on each line it adds from the stream.

const me = document.getElementById("user-name")?.textContent ?? "";
const today = new Date().toDateString();

/** The time of `date` as the log shows it: "14:03", or "7 Dec, 14:03" on another day. */
function label(date) {
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (date.toDateString() === today) {
    return time;
  }
  return `${date.toLocaleDateString([], { day: "numeric", month: "short" })}, ${time}`;
}

/** Show `element` (a <time>) in local time, the full date in its title. */
function localize(element) {
  const date = new Date(element.dateTime);
  if (Number.isNaN(date.getTime())) {
    return;
  }
  element.textContent = label(date);
  element.title = date.toLocaleString();
}

/**
 * Mark `line` as the user's own if `author` is the user, and end it with
 * `created` (an ISO 8601 time), if the message has one: a message published
 * by hand (manage.py shell) may not.
 */
export function decorate(line, { author, created }) {
  line.classList.toggle("mine", author === me);
  if (created) {
    const time = document.createElement("time");
    time.dateTime = created;
    line.append(time);
    localize(time);
  }
}

for (const time of document.querySelectorAll("#chat-log time")) {
  localize(time);
}
