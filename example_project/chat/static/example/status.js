// Show a connection's state clearly: each <output class="connection"> (the
// chat's, the jobs', the board's) gets data-state, the first word of what its
// page's script writes in it ("open", "connecting", "reconnecting in 2.0 s",
// "closed: log in again", "open (sse)"), and site.css colours it by that.
// The pages' scripts only write text; this module, linked by
// templates/example/base.html, watches it.

const STATES = new Set(["open", "connecting", "reconnecting", "closed"]);

function mark(output) {
  const word = output.textContent.trim().split(/[\s:(]/, 1)[0];
  output.dataset.state = STATES.has(word) ? word : "connecting";
}

for (const output of document.querySelectorAll("output.connection")) {
  mark(output);
  new MutationObserver(() => mark(output)).observe(output, {
    childList: true,
    characterData: true,
    subtree: true,
  });
}
