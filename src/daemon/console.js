// jobwarden's console: reload the page every 5 s while the tab is visible. The page works
// the same without this script; only the refresh is lost.
"use strict";
(function () {
  const every = 5000;
  let timer = null;
  function schedule() {
    clearTimeout(timer);
    // Says on the page that the refresh runs (the browser test reads it).
    document.documentElement.dataset.refresh =
      document.visibilityState === "visible" ? "on" : "paused";
    if (document.visibilityState === "visible") {
      timer = setTimeout(function () { window.location.reload(); }, every);
    }
  }
  document.addEventListener("visibilitychange", schedule);
  schedule();
})();
