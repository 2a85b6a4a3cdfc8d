// Scan station: a barcode scanner is a keyboard that types fast and presses Enter.
// Each scan is posted at once; the answer is shown large, with a sound. A scan that cannot
// reach the server is kept in this browser with its event_id and sent again when it can.
// With the action on "what comes next", a bag's first scan asks the server for its likely
// next step and preselects it; scanning the same bag again (or Enter) records it.
(function () {
  "use strict";
  const form = document.getElementById("scan-form");
  const input = document.getElementById("barcode");
  const result = document.getElementById("result");
  const history = document.getElementById("history");
  const queued = document.getElementById("queued");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  // the queue is the scanning user's own: another login in this browser neither sees nor
  // sends it (the server refuses a scan whose scanned_by is not the signed-in user, too)
  const user = form.elements.scanned_by.value;
  const KEY = "vein2vein.pending-scans." + user;
  let audio = null;

  function beep(ok) {
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      const tone = audio.createOscillator();
      const gain = audio.createGain();
      tone.frequency.value = ok ? 880 : 220;
      tone.type = ok ? "sine" : "square";
      gain.gain.value = 0.15;
      tone.connect(gain).connect(audio.destination);
      tone.start();
      tone.stop(audio.currentTime + (ok ? 0.12 : 0.6));
    } catch (e) { /* no sound available: the screen still says it */ }
  }

  function pending() { return JSON.parse(localStorage.getItem(KEY) || "[]"); }
  function savePending(list) {
    localStorage.setItem(KEY, JSON.stringify(list));
    queued.hidden = list.length === 0;
    queued.textContent = list.length + " waiting to be sent (offline)";
  }

  function show(answer) {
    result.className = "result " + (answer.ok ? "ok" : (answer.queued ? "queued" : "bad")) +
      " severity-" + (answer.severity || "information");
    result.innerHTML = "";
    const headline = document.createElement("p");
    headline.id = "result-headline";
    headline.className = "headline";
    headline.textContent = answer.headline;
    const detail = document.createElement("p");
    detail.className = "detail";
    detail.textContent = answer.detail;
    result.append(headline, detail);
    if (!answer.ok && answer.code && !answer.queued && answer.code !== "nothing_next") {
      const code = document.createElement("p");
      code.className = "muted";
      code.textContent = "Code: " + answer.code;
      result.append(code);
    }
    const item = document.createElement("li");
    item.className = answer.ok ? "ok" : (answer.queued ? "queued" : "bad");
    item.textContent = new Date().toLocaleTimeString() + "  " + answer.headline + "  " +
      (answer.action || "").replace(/_/g, " ") + "  " + (answer.barcode || answer.din || "") +
      "  " + answer.detail;
    history.prepend(item);
    if (answer.code !== "suggested") { beep(answer.ok); }
  }

  // what comes next: the barcode whose suggested action is preselected, waiting for a
  // second scan (or Enter) to be recorded
  let awaiting = null;
  const actionSelect = form.elements.action;

  function chooseSite(code) {
    const site = form.elements.site;
    if (!code || !site) { return; }
    if (site.tagName === "SELECT") {
      if ([...site.options].some(function (o) { return o.value === code; })) { site.value = code; }
    }
  }

  async function suggest(barcode) {
    const body = new URLSearchParams({ barcode: barcode, action: "", scanned_by: user });
    let answer;
    try {
      const response = await fetch(form.getAttribute("action"), {
        method: "POST",
        headers: { "Accept": "application/json", "X-CSRFToken": csrf },
        body: body,
        credentials: "same-origin",
      });
      if (response.status >= 500) { throw new Error("server unavailable"); }
      answer = await response.json();
    } catch (e) {
      show({ ok: false, headline: "NOT RECORDED", barcode: barcode, code: "offline",
             severity: "warning", detail: "No connection to suggest what comes next: choose " +
             "the action yourself and scan again (the scan is then kept until the connection " +
             "is back)." });
      return;
    }
    answer.barcode = barcode;
    show(answer);
    if (answer.code === "suggested") {
      actionSelect.value = answer.action;
      chooseSite(answer.site);
      awaiting = barcode;
      arrange();
      input.value = barcode;
      input.select();  // Enter records it; the next scan types over it
    }
  }

  async function send(scan) {
    const body = new URLSearchParams(scan);
    const response = await fetch(form.getAttribute("action"), {
      method: "POST",
      headers: { "Accept": "application/json", "X-CSRFToken": csrf },
      body: body,
      credentials: "same-origin",
    });
    if (response.status >= 500) { throw new Error("server unavailable"); }
    const answer = await response.json();
    // not an answer about the scan: the session ended, the form expired, or too many at once.
    // The scan was not recorded: it stays queued until the person signs in again.
    if (response.status === 401 || response.status === 429 || answer.code === "csrf_failed") {
      const kept = new Error("not sent");
      kept.answer = answer;
      throw kept;
    }
    answer.barcode = scan.barcode;
    return answer;
  }

  let flushing = false;  // one sender at a time: the timer and the online event may overlap

  async function flush() {
    if (flushing) { return; }
    flushing = true;
    try {
      let list = pending();
      while (list.length) {
        try {
          const answer = await send(list[0]);
          answer.headline = "SENT LATER: " + answer.headline;
          show(answer);
        } catch (e) {
          if (e.answer) {
            show({ ok: false, queued: true, severity: "warning",
                   headline: "KEPT: " + list.length + " scan(s) not sent yet",
                   detail: (e.answer.detail || "The server did not take them now.") +
                     " They stay on this device and are sent once you are signed in again." });
          }
          return;
        }
        list = pending().slice(1);
        savePending(list);
      }
    } finally {
      flushing = false;
    }
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const barcode = input.value.trim();
    input.value = "";
    input.focus();
    if (!barcode) { return; }
    if (awaiting !== null && barcode !== awaiting) {
      awaiting = null;  // another bag: what comes next for it
      actionSelect.value = "";
    }
    if (!actionSelect.value) {
      await suggest(barcode);
      return;
    }
    const confirming = awaiting !== null;
    awaiting = null;
    const patient = form.elements.patient_ref;
    const born = form.elements.patient_birth_date;
    const scan = {
      barcode: barcode,
      action: actionSelect.value,
      site: form.elements.site.value,
      patient_ref: patient ? patient.value : "",
      patient_birth_date: born ? born.value : "",
      coi: form.elements.coi.value.trim(),
      scanned_by: user,
      event_id: crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random(),
      occurred_at: new Date().toISOString(),
    };
    form.elements.coi.value = "";
    // a signature is given with its act and never kept: the password goes with this one scan
    const credentials = {};
    if (signed()) {
      for (const name of ["password", "witness_email", "witness_password"]) {
        if (form.elements[name].value) { credentials[name] = form.elements[name].value; }
        form.elements[name].value = "";
      }
    }
    if (confirming) {  // the suggested step is recorded: the next bag gets its own suggestion
      actionSelect.value = "";
      arrange();
    }
    try {
      show(await send(Object.assign({}, scan, credentials)));
    } catch (e) {
      if (Object.keys(credentials).length) {
        // a signed step is never queued: a password is never kept in this browser
        show({ ok: false, headline: "NOT RECORDED", barcode: barcode, action: scan.action,
               code: "offline", detail: "No connection: a signed step needs the server. " +
               "Scan it again, with your password, when the connection is back." });
        return;
      }
      if (scan.action === "infuse") {
        // the bedside check is the server's: an infusion is never queued, and no patient
        // reference is ever kept in this browser
        show({ ok: false, headline: "NOT CHECKED", barcode: barcode, action: scan.action,
               code: "offline", detail: "No connection: the bedside check needs the server. " +
               "Do not infuse until it answers." });
        return;
      }
      delete scan.patient_ref;
      delete scan.patient_birth_date;
      savePending(pending().concat([scan]));
      show({ ok: false, queued: true, headline: "KEPT OFFLINE", barcode: barcode,
             action: scan.action, detail: "No connection: this scan is kept and sent " +
             "with its event id when the connection is back. Do not scan it again." });
    }
  });

  // keep the focus in the scan field: a scanner types wherever the focus is
  document.addEventListener("click", function (event) {
    if (!event.target.closest("select, input, button, a, summary, details, fieldset")) {
      input.focus();
    }
  });
  // ask for the signature only where the scan's site signs the step
  const fields = document.getElementById("signature-fields");
  const rules = JSON.parse(fields.dataset.signed || "{}");
  function required() {
    const steps = rules[form.elements.site.value] || {};
    return form.elements.action.value in steps ? { witness: steps[form.elements.action.value] } : null;
  }
  function signed() { return required() !== null; }
  function arrange() {
    const need = required();
    fields.hidden = need === null;
    form.elements.password.required = need !== null;
    document.getElementById("witness-fields").hidden = !(need && need.witness);
    form.elements.witness_email.required = Boolean(need && need.witness);
    form.elements.witness_password.required = Boolean(need && need.witness);
  }
  arrange();
  form.elements.action.addEventListener("change", function () {
    arrange();
    input.focus();
    if (awaiting !== null) { input.value = awaiting; input.select(); }
  });
  if (form.elements.site.tagName === "SELECT") {
    form.elements.site.addEventListener("change", arrange);
  }
  // a phone's keyboard only when asked for: a scanner types without one
  const keyboard = document.getElementById("keyboard");
  keyboard.addEventListener("click", function () {
    const typing = input.inputMode !== "text";
    input.inputMode = typing ? "text" : "none";
    keyboard.setAttribute("aria-pressed", String(typing));
    input.blur();
    input.focus();
  });
  // a page answered by the server with a suggestion: the barcode waits for Enter
  if (input.value) {
    awaiting = input.value.trim();
    input.select();
  }
  window.addEventListener("online", flush);
  setInterval(flush, 10000);
  savePending(pending());
  flush();
  form.dataset.ready = "true";  // scans are taken by this script from now on
})();
