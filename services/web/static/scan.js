// Scan station: a barcode scanner is a keyboard that types fast and presses Enter.
// Each scan is posted at once; the answer is shown large, with a sound. A scan that cannot
// reach the server is kept in this browser with its event_id and sent again when it can.
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
    result.className = "result " + (answer.ok ? "ok" : (answer.queued ? "queued" : "bad"));
    result.innerHTML = "";
    const headline = document.createElement("p");
    headline.id = "result-headline";
    headline.className = "headline";
    headline.textContent = answer.headline;
    const detail = document.createElement("p");
    detail.className = "detail";
    detail.textContent = answer.detail;
    result.append(headline, detail);
    if (!answer.ok && answer.code && !answer.queued) {
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
    beep(answer.ok);
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
        } catch (e) { return; }
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
    const scan = {
      barcode: barcode,
      action: form.elements.action.value,
      site: form.elements.site.value,
      patient_ref: form.elements.patient_ref.value,
      patient_birth_date: form.elements.patient_birth_date.value,
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
  form.elements.action.addEventListener("change", function () { arrange(); input.focus(); });
  form.elements.site.addEventListener("change", arrange);
  window.addEventListener("online", flush);
  setInterval(flush, 10000);
  savePending(pending());
  flush();
})();
