// The thaw timer: how long is left until the product's thaw limit runs out.
(function () {
  "use strict";
  const timer = document.getElementById("thaw-timer");
  if (!timer) { return; }
  const deadline = new Date(timer.dataset.deadline).getTime();
  function tick() {
    const left = Math.max(0, Math.floor((deadline - Date.now()) / 1000));
    const minutes = Math.floor(left / 60);
    const seconds = String(left % 60).padStart(2, "0");
    timer.textContent = left > 0 ? minutes + " min " + seconds + " s" : "EXPIRED: do not infuse";
    timer.className = left > 300 ? "" : "bad-text";
  }
  tick();
  setInterval(tick, 1000);
})();
