// The console works without this file; it adds auto-refresh, copy buttons and confirmations.
"use strict";

function refreshEvery(main, seconds) {
  let paused = false;
  const note = document.querySelector("[data-refresh-note]");
  if (note) {
    const toggle = document.createElement("button");
    toggle.type = "button";
    toggle.textContent = "Pause";
    toggle.addEventListener("click", () => {
      paused = !paused;
      toggle.textContent = paused ? "Resume" : "Pause";
    });
    note.append(" ", toggle);
  }
  setInterval(async () => {
    if (paused || document.hidden) return;
    try {
      const response = await fetch(location.href, { credentials: "same-origin" });
      if (!response.ok || response.redirected) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.querySelector("[data-live]");
      const old = document.querySelector("[data-live]");
      if (fresh && old) old.replaceWith(fresh);
    } catch (error) {
      // The next tick tries again.
    }
  }, seconds * 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  const main = document.querySelector("main[data-refresh]");
  if (main) refreshEvery(main, Number(main.dataset.refresh));
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      await navigator.clipboard.writeText(button.dataset.copy);
      button.textContent = "Copied";
    });
  }
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
  for (const link of document.querySelectorAll("a[data-back]")) {
    if (history.length > 1) {
      link.addEventListener("click", (event) => {
        event.preventDefault();
        history.back();
      });
    }
  }
});
