// Page forms: a datetime-local field is the browser's own clock; tell the server its offset.
(function () {
  "use strict";
  document.querySelectorAll('input[name="tz_offset"]').forEach(function (field) {
    field.value = String(new Date().getTimezoneOffset());
  });
})();
