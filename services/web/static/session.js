// On every page: signing out leaves no patient reference in this browser. Queued scans keep
// their barcodes (they are sent when their user signs in again) but never a patient reference.
(function () {
  "use strict";
  const logout = document.getElementById("logout-form");
  if (!logout) { return; }
  logout.addEventListener("submit", function () {
    try {
      for (let i = localStorage.length - 1; i >= 0; i--) {
        const key = localStorage.key(i);
        if (!key || !key.startsWith("vein2vein.")) { continue; }
        if (key.startsWith("vein2vein.pending-scans.")) {
          const list = JSON.parse(localStorage.getItem(key) || "[]");
          list.forEach(function (scan) { delete scan.patient_ref; });
          localStorage.setItem(key, JSON.stringify(list));
        } else {
          localStorage.removeItem(key);
        }
      }
      sessionStorage.clear();
    } catch (e) { /* storage unavailable: nothing was kept */ }
  });
})();
