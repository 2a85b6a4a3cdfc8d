// The label page: the PDF in a frame, handed to the browser's print dialog once it is loaded.
(function () {
  "use strict";
  const frame = document.getElementById("label-frame");
  const button = document.getElementById("print-now");
  function print() {
    try { frame.contentWindow.focus(); frame.contentWindow.print(); } catch (e) { window.print(); }
  }
  button.addEventListener("click", print);
  frame.addEventListener("load", function () { setTimeout(print, 300); });
})();
