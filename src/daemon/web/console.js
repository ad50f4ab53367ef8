// jobwarden's console: reloads the page every 5 s while the tab is visible, and, when the
// page carries actions ([http] token is set), asks for the token once, checks it with the
// daemon (GET /api/v1/whoami) before keeping it in this tab's session storage, and runs each
// action as a dry run first: what would change in words ("running → failed, reason: ..."),
// the exact statement folded beneath, and only "Confirm" writes. Its result stays until the
// operator dismisses it. The pause form pauses every write, with a reason. An open
// incident's "Fail all", "Re-queue all" and "Snooze all" call the bulk endpoint the same
// way: a dry run shows the count, a sample of ids and the statement, and the write repeats
// that count ("expect") with the person's reason. The preview opens beside the button that
// asked, inside the window. The page works without this script, minus the refresh and the
// actions.
"use strict";
(function () {
  const every = 5000;
  const key = "jobwarden-token";
  const base = document.body.dataset.base || "";
  const $ = function (id) { return document.getElementById(id); };
  const actions = document.querySelectorAll(".actions");
  const titles = {
    fail: function (job) { return "Mark job " + job + " as failed?"; },
    requeue: function (job) { return "Re-queue job " + job + "?"; },
    snooze: function (job) { return "Snooze job " + job + "?"; },
    unsnooze: function (job) { return "End the snooze of job " + job + "?"; },
  };
  const bulkTitles = {
    fail: function (id) { return "Fail all jobs of incident " + id + "?"; },
    requeue: function (id) { return "Re-queue all jobs of incident " + id + "?"; },
    snooze: function (id) { return "Snooze all jobs of incident " + id + "?"; },
  };
  let timer = null;
  // An open preview or a token being typed: no reload under the operator's hands.
  let busy = false;
  let pending = null;

  function schedule() {
    clearTimeout(timer);
    const visible = document.visibilityState === "visible";
    // Says on the page whether the refresh runs (the browser tests read it).
    document.documentElement.dataset.refresh = visible && !busy ? "on" : "paused";
    if (visible && !busy) {
      timer = setTimeout(function () { window.location.reload(); }, every);
    }
  }

  function token() { return sessionStorage.getItem(key); }

  function showActions() {
    const unlocked = token() !== null;
    actions.forEach(function (a) { a.hidden = !unlocked; });
    if ($("unlock")) { $("unlock").hidden = unlocked || actions.length === 0; }
    if ($("locked")) { $("locked").hidden = !unlocked; }
  }

  // As core::job::job_link: "." and ".." cannot be a path segment, even as %2E, so they
  // go in the query, which the daemon reads first.
  function jobLink(prefix, id, suffix) {
    if (id === "." || id === "..") {
      return prefix + "_" + suffix + "?id=" + id.replace(/\./g, "%2E");
    }
    return prefix + encodeURIComponent(id) + suffix;
  }

  async function send(p, dryRun) {
    const body = { dry_run: dryRun };
    if (p.seen) { body.seen = p.seen; }
    const reason = $("preview-reason").value.trim();
    if (reason) { body.reason = reason; }
    if (p.act === "snooze") { body.for = $("preview-for").value; }
    if (p.act === "unsnooze") { body.for = "0s"; }
    const act = p.act === "unsnooze" ? "snooze" : p.act;
    let url = jobLink(base + "/api/v1/jobs/", p.job, "/" + act);
    if (p.incident) {
      // The bulk endpoint: the incident's jobs, and, to write, the count the dry run showed.
      url = base + "/api/v1/jobs/" + act;
      body.incident = p.incident;
      if (!dryRun) { body.expect = p.count; }
    }
    const r = await fetch(url, {
      method: "POST",
      headers: { "Authorization": "Bearer " + token(), "Content-Type": "application/json" },
      body: JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
    let answer = {};
    try { answer = await r.json(); } catch (e) { answer = { error: "HTTP " + r.status }; }
    if (r.status === 401) {
      sessionStorage.removeItem(key);
      showActions();
    }
    return { ok: r.ok, answer: answer };
  }

  async function call(method, path, body) {
    const init = {
      method: method,
      headers: { "Authorization": "Bearer " + token() },
      cache: "no-store",
      credentials: "omit",
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const r = await fetch(base + path, init);
    let answer = {};
    try { answer = await r.json(); } catch (e) { answer = { error: "HTTP " + r.status }; }
    return { status: r.status, ok: r.ok, answer: answer };
  }

  function say(text, cls) {
    const out = $("preview-result");
    out.textContent = text;
    out.className = cls || "";
  }

  function describe(answer) {
    if (typeof answer.count === "number" && answer.job_id === undefined) {
      const sample = (answer.sample || []).join(", ");
      return answer.count + " job" + (answer.count === 1 ? "" : "s") +
        (sample ? " (" + sample + (answer.count > (answer.sample || []).length ? ", …" : "") + ")" : "") +
        (answer.statement ? "\n" + answer.statement : "");
    }
    if (answer.statement) { return answer.statement; }
    if (answer.snoozed_until) {
      return "no alerts and no writes for job " + answer.job_id + " until " + answer.snoozed_until;
    }
    return "the snooze of job " + answer.job_id + " ends now";
  }

  // What would change, in words: "running → failed, reason: the deploy killed it".
  function words(answer) {
    const reason = $("preview-reason").value.trim();
    let said = "";
    if (answer.status_before !== undefined && answer.status_after !== undefined) {
      said = answer.status_before + " → " + answer.status_after;
    } else if (typeof answer.count === "number" && pending.incident) {
      const to = { fail: "failed", requeue: "re-queued", snooze: "snoozed" }[pending.act];
      said = answer.count + " job" + (answer.count === 1 ? "" : "s") + " → " + to;
    } else if (answer.snoozed_until) {
      said = "no alerts and no writes until " + answer.snoozed_until;
    } else {
      said = "the snooze ends now";
    }
    return said + (reason ? ", reason: " + reason : ", no reason given");
  }

  async function preview() {
    $("confirm").disabled = true;
    $("preview-statement").textContent = "…";
    $("preview-words").textContent = "…";
    say("");
    const { ok, answer } = await send(pending, true);
    if (!ok) {
      $("preview-statement").textContent = "";
      $("preview-words").textContent = "";
      say(answer.error || "refused", "bad");
      return;
    }
    pending.answer = answer;
    $("preview-words").textContent = words(answer);
    $("preview-statement").textContent = describe(answer);
    if (pending.incident) {
      pending.count = answer.count;
      $("confirm").textContent = "Confirm for " + answer.count + " job" + (answer.count === 1 ? "" : "s");
    }
    $("confirm").disabled = false;
    place();
  }

  // Beside (below, else above) the button that asked, and never outside the window.
  function place() {
    const panel = $("preview");
    if (!pending || panel.hidden) { return; }
    const gap = 8;
    const r = pending.anchor.getBoundingClientRect();
    const w = panel.offsetWidth;
    const h = panel.offsetHeight;
    let top = r.bottom + gap;
    if (top + h > window.innerHeight - gap) { top = r.top - h - gap; }
    top = Math.max(gap, Math.min(top, window.innerHeight - h - gap));
    const left = Math.max(gap, Math.min(r.right - w, window.innerWidth - w - gap));
    panel.style.top = top + "px";
    panel.style.left = left + "px";
  }

  function open(p) {
    pending = p;
    busy = true;
    schedule();
    $("preview").hidden = false;
    $("confirm").hidden = false;
    $("cancel").textContent = "Cancel";
    $("preview-title").textContent = p.incident ? bulkTitles[p.act](p.incident) : titles[p.act](p.job);
    $("preview-for-label").hidden = p.act !== "snooze";
    $("preview-reason").value = "";
    $("confirm").textContent = "Confirm";
    place();
    preview();
  }

  function close() {
    const acted = pending !== null && pending.done;
    pending = null;
    busy = false;
    $("preview").hidden = true;
    // After a write: the page as the next scan sees it.
    if (acted) { window.location.reload(); return; }
    schedule();
  }

  async function confirmAction() {
    if (pending.incident && !$("preview-reason").value.trim()) {
      say("A reason is needed to act on many jobs at once.", "bad");
      $("preview-reason").focus();
      return;
    }
    $("confirm").disabled = true;
    const { ok, answer } = await send(pending, false);
    if (!ok) {
      say(answer.error || "refused", "bad");
      // A count that changed since the preview: show the new one, to confirm again.
      if (pending.incident && answer.count !== undefined) { preview(); }
      return;
    }
    if (pending.incident) {
      const outcomes = Object.keys(answer.outcomes || {}).map(function (k) {
        return answer.outcomes[k] + " " + k;
      }).join(", ");
      say("Done: " + answer.count + " jobs (" + outcomes + "), batch " + answer.batch, "good");
    } else {
      say("Done (" + answer.outcome + "): " + words(answer), "good");
    }
    // The result stays until the operator dismisses it; then the page reloads.
    pending.done = true;
    $("confirm").hidden = true;
    $("cancel").textContent = "Dismiss";
  }

  async function unlock(value) {
    sessionStorage.setItem(key, value);
    const { status, answer } = await call("GET", "/api/v1/whoami");
    if (status === 200) {
      $("unlock-result").textContent = "";
      if ($("locked-as")) { $("locked-as").textContent = answer.by ? " as " + answer.by : ""; }
    } else {
      sessionStorage.removeItem(key);
      $("unlock-result").textContent = status === 401 ?
        "That token is wrong: nothing is unlocked." : (answer.error || "refused");
      $("unlock-result").className = "bad";
    }
    showActions();
  }

  async function pause(span, reason) {
    const { ok, answer } = await call("POST", "/api/v1/pause", { for: span, reason: reason });
    const out = $("pause-result");
    out.textContent = ok ?
      (answer.paused_until ? " Writes paused until " + answer.paused_until + "." : " Writes resume now.") :
      " " + (answer.error || "refused");
    out.className = ok ? "good" : "bad";
    if (ok) { setTimeout(function () { window.location.reload(); }, 1500); }
  }

  if (actions.length > 0) {
    actions.forEach(function (a) {
      a.addEventListener("click", function (event) {
        const button = event.target.closest("button[data-act]");
        if (!button || !token()) { return; }
        if (a.dataset.incident) {
          open({ incident: a.dataset.incident, act: button.dataset.act, anchor: button, count: null });
          return;
        }
        let seen = null;
        try { seen = a.dataset.seen ? JSON.parse(a.dataset.seen) : null; } catch (e) { seen = null; }
        open({ job: a.dataset.job, act: button.dataset.act, seen: seen, anchor: button });
      });
    });
    $("unlock-form").addEventListener("submit", function (event) {
      event.preventDefault();
      const value = $("token").value;
      $("token").value = "";
      if (value) { unlock(value); }
    });
    if ($("pause-form")) {
      $("pause-form").addEventListener("submit", function (event) {
        event.preventDefault();
        pause($("pause-for").value, $("pause-reason").value.trim());
      });
      $("pause-reason").addEventListener("focus", function () { busy = true; schedule(); });
    }
    if ($("resume")) {
      $("resume").addEventListener("click", function () { pause("0s", ""); });
    }
    $("token").addEventListener("focus", function () { busy = true; schedule(); });
    $("token").addEventListener("blur", function () { busy = pending !== null; schedule(); });
    $("lock").addEventListener("click", function () {
      sessionStorage.removeItem(key);
      close();
      showActions();
    });
    $("confirm").addEventListener("click", confirmAction);
    $("cancel").addEventListener("click", close);
    $("preview-for").addEventListener("change", preview);
    $("preview-reason").addEventListener("input", function () {
      if (pending && pending.answer && !pending.done) { $("preview-words").textContent = words(pending.answer); }
    });
    window.addEventListener("resize", place);
    window.addEventListener("scroll", place, { passive: true });
    showActions();
    // A token kept from before: still right (it may have changed), and whose.
    if (token() !== null) { unlock(token()); }
  }
  document.addEventListener("visibilitychange", schedule);
  schedule();
})();
