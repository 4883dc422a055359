// Small behaviours that would otherwise be inline event handlers, which the
// Content-Security-Policy does not run: `data-select-on-click` selects an input's text
// when clicked; `data-submit-on-change` submits its form when its value changes.
(function () {
  "use strict";
  document.querySelectorAll("[data-select-on-click]").forEach(function (input) {
    input.addEventListener("click", function () { input.select(); });
  });
  document.querySelectorAll("[data-submit-on-change]").forEach(function (control) {
    control.addEventListener("change", function () { control.form.submit(); });
  });
})();
