// Keep what is typed in a message box across reloads of its page: the room
// page reloads itself when the server says its history is gone (after a
// restart, say), and the user reloads pages too; text typed meanwhile, in an
// outage, say, must still be there afterwards.
//
// The draft lives in sessionStorage, one per tab and key (the room): it
// survives reloads and a restored tab, and two tabs on the same room do not
// overwrite each other's.

/**
 * Restore `input`'s draft saved under `key`, and keep it saved: on each
 * change, and when the page goes away (so text put back by a script, after
 * a failed send, is kept too). An empty box leaves no draft.
 */
export function keepDraft(input, key) {
  const save = () => {
    try {
      if (input.value) {
        sessionStorage.setItem(key, input.value);
      } else {
        sessionStorage.removeItem(key);
      }
    } catch {
      // Storage full or disabled: the draft lives in the box only.
    }
  };
  let saved = null;
  try {
    saved = sessionStorage.getItem(key);
  } catch {
    // Storage disabled: nothing to restore.
  }
  if (saved && !input.value) {
    input.value = saved;
  }
  input.addEventListener("input", save);
  input.form?.addEventListener("submit", () => queueMicrotask(save));
  window.addEventListener("pagehide", save);
}
